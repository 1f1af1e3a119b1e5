"""The assignment engine: one pass hands waiting conversations to free agents, atomically across nodes.

Why it is safe with several nodes dispatching at once (PostgreSQL):

* the ``routing_agents`` rows of the queues' online members are locked (``FOR UPDATE``,
  in id order so that passes never deadlock each other) before loads are counted and
  waiting entries read, and stay locked until the transaction ends: no two transactions
  can fill the same agent's last free slot, and a pass that queued a conversation or
  freed a slot, once it has the locks, sees everything earlier passes committed, so a
  conversation never waits while an agent sits free;
* waiting entries are claimed with ``FOR UPDATE SKIP LOCKED``, so an entry being moved
  by a transfer at that moment is left alone;
* the conversation itself is assigned with a conditional UPDATE (``assignee_id IS
  NULL``), so an agent accepting it by hand at the same moment wins cleanly.

On SQLite the single writer serializes passes and the locking clauses are not emitted.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Uuid, case, func, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from parley.context import Context
from parley.kit.types import utcnow
from parley.models import (
    Contact,
    Conversation,
    ConversationStatus,
    EntryStatus,
    QueueEntry,
    QueueMember,
    RoleCapacity,
    RoutingAgent,
    RoutingQueue,
    User,
)
from parley.routing.strategies import Agent, Membership, choose

# When neither the agent nor their role says otherwise.
DEFAULT_CAPACITY = 5
# Statuses that occupy one of the agent's slots; snoozed and resolved ones do not.
BUSY_STATUSES = (ConversationStatus.open.value, ConversationStatus.pending.value)
PASS_LIMIT = 5000
UPDATE_CHUNK = 500


@dataclass(frozen=True)
class Decision:
    entry_id: uuid.UUID
    queue_id: uuid.UUID
    conversation_id: uuid.UUID
    user_id: uuid.UUID
    waited_s: float
    last_agent: bool


async def capacities(
    session: AsyncSession, users: list[tuple[uuid.UUID, uuid.UUID, int | None]]
) -> dict[uuid.UUID, int]:
    """Each agent's capacity: their own, else their role's, else the default. ``users``: (id, role, own)."""
    role_caps = dict((await session.execute(select(RoleCapacity.role_id, RoleCapacity.capacity))).all())
    return {
        user_id: own if own is not None else role_caps.get(role_id, DEFAULT_CAPACITY)
        for user_id, role_id, own in users
    }


async def loads(session: AsyncSession, user_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    if not user_ids:
        return {}
    rows = await session.execute(
        select(Conversation.assignee_id, func.count())
        .where(Conversation.assignee_id.in_(user_ids), Conversation.status.in_(BUSY_STATUSES))
        .group_by(Conversation.assignee_id)
    )
    return {user_id: int(count) for user_id, count in rows.all() if user_id is not None}


async def _last_agents(
    session: AsyncSession, contact_ids: list[uuid.UUID], since: datetime
) -> dict[uuid.UUID, uuid.UUID]:
    """The agent who most recently served each contact, if that was after ``since``."""
    served = func.coalesce(Conversation.resolved_at, Conversation.last_outbound_at, Conversation.updated_at)
    rows = await session.execute(
        select(Conversation.contact_id, Conversation.assignee_id, served)
        .where(
            Conversation.contact_id.in_(contact_ids), Conversation.assignee_id.is_not(None), served >= since
        )
        .order_by(served)
    )
    latest: dict[uuid.UUID, uuid.UUID] = {}
    for contact_id, assignee_id, _at in rows.all():
        if assignee_id is not None:
            latest[contact_id] = assignee_id  # ordered by time: the last one wins
    return latest


async def dispatch(
    session: AsyncSession,
    ctx: Context | None,
    *,
    queue_ids: list[uuid.UUID] | None = None,
    user_ids: list[uuid.UUID] | None = None,
    now: datetime | None = None,
    limit: int = PASS_LIMIT,
) -> list[Decision]:
    """Assigns as many waiting conversations as free agents allow, in the caller's write transaction.

    ``user_ids`` restricts the pass to those agents: when only their capacity changed (a conversation
    of theirs ended, they came online), nobody else can have become able to take a waiting customer,
    since every earlier change ran its own pass, so locking the others would only make passes queue.
    """
    now = now or utcnow()
    queue_q = select(RoutingQueue).where(RoutingQueue.is_active.is_(True))
    if queue_ids is not None:
        if not queue_ids:
            return []
        queue_q = queue_q.where(RoutingQueue.id.in_(queue_ids))
    queues = {q.id: q for q in (await session.scalars(queue_q)).all()}
    if not queues:
        return []
    # Agents are locked before the waiting entries are read: whoever queued a conversation or
    # freed a slot and then got the lock sees every earlier pass's outcome, so no wake-up is lost.
    online = select(User.id).where(User.is_active.is_(True), User.presence == "online")
    candidate_ids = (
        select(QueueMember.user_id)
        .where(QueueMember.queue_id.in_(list(queues)), QueueMember.user_id.in_(online))
        .distinct()
    )
    if user_ids is not None:
        candidate_ids = candidate_ids.where(QueueMember.user_id.in_(user_ids))
    locked = (
        await session.execute(
            select(RoutingAgent, User.name, User.role_id, User.presence_changed_at)
            .join(User, User.id == RoutingAgent.user_id)
            .where(RoutingAgent.user_id.in_(candidate_ids), User.presence == "online")
            .order_by(RoutingAgent.user_id)
            .with_for_update(of=RoutingAgent)
            .execution_options(populate_existing=True)
        )
    ).all()
    if not locked:
        return []
    user_ids = [row[0].user_id for row in locked]
    caps = await capacities(session, [(row[0].user_id, row[2], row[0].capacity) for row in locked])
    current = await loads(session, user_ids)
    agents = {
        row[0].user_id: Agent(
            user_id=row[0].user_id,
            name=row[1],
            capacity=caps[row[0].user_id],
            load=current.get(row[0].user_id, 0),
            last_assigned_at=row[0].last_assigned_at,
            online_since=row[3],
        )
        for row in locked
    }
    agent_rows = {row[0].user_id: row[0] for row in locked}
    if not any(a.free for a in agents.values()):
        return []
    member_rows = (
        await session.scalars(
            select(QueueMember)
            .where(QueueMember.queue_id.in_(list(queues)), QueueMember.user_id.in_(user_ids))
            .execution_options(populate_existing=True)
        )
    ).all()
    members: dict[uuid.UUID, list[Membership]] = defaultdict(list)
    member_of: dict[tuple[uuid.UUID, uuid.UUID], tuple[Membership, QueueMember]] = {}
    for row in member_rows:
        membership = Membership(
            agent=agents[row.user_id],
            skill_level=row.skill_level,
            weight=row.weight,
            assigned_count=row.assigned_count,
            last_assigned_at=row.last_assigned_at,
        )
        members[row.queue_id].append(membership)
        member_of[(row.queue_id, row.user_id)] = (membership, row)

    entries: list[QueueEntry] = []
    for queue_id in queues:
        free = sum(max(0, m.agent.capacity - m.agent.load) for m in members.get(queue_id, []))
        if not free:
            continue
        entries.extend(
            (
                await session.scalars(
                    select(QueueEntry)
                    .where(QueueEntry.queue_id == queue_id, QueueEntry.status == EntryStatus.waiting)
                    .order_by(
                        QueueEntry.priority.desc(),
                        QueueEntry.waiting_since,
                        QueueEntry.entered_at,
                        QueueEntry.id,
                    )
                    .limit(min(free, limit))
                    .with_for_update(skip_locked=True)
                    .execution_options(populate_existing=True)
                )
            ).all()
        )
    if not entries:
        return []
    # Across queues too, VIPs first and then whoever has waited longest.
    entries.sort(key=lambda e: (-e.priority, e.waiting_since, e.entered_at, str(e.id)))

    last_agent: dict[uuid.UUID, uuid.UUID] = {}
    windows = [
        queues[e.queue_id].last_agent_window_s for e in entries if queues[e.queue_id].last_agent_window_s
    ]
    if windows:
        last_agent = await _last_agents(
            session, list({e.contact_id for e in entries}), now - timedelta(seconds=max(windows))
        )

    planned: list[tuple[QueueEntry, Membership, RoutingQueue, bool]] = []
    for entry in entries[:limit]:
        queue = queues[entry.queue_id]
        chosen: Membership | None = None
        by_last_agent = False
        if queue.last_agent_window_s and entry.contact_id in last_agent:
            pair = member_of.get((queue.id, last_agent[entry.contact_id]))
            if pair is not None and pair[0].agent.free:
                chosen, by_last_agent = pair[0], True
        if chosen is None:
            chosen = choose(queue.strategy, members.get(queue.id, []))
        if chosen is None:
            continue
        _count(chosen, now, +1)
        planned.append((entry, chosen, queue, by_last_agent))

    assigned: set[uuid.UUID] = set()
    for start in range(0, len(planned), UPDATE_CHUNK):
        chunk = planned[start : start + UPDATE_CHUNK]
        # Typed binds: PostgreSQL will not turn a CASE of untyped parameters into a uuid.
        assignees = {e.conversation_id: literal(m.agent.user_id, Uuid()) for e, m, _q, _l in chunk}
        teams = {
            e.conversation_id: literal(q.team_id, Uuid()) for e, _m, q, _l in chunk if q.team_id is not None
        }
        values: dict[str, Any] = {
            "assignee_id": case(assignees, value=Conversation.id),
            "status": ConversationStatus.open.value,
            "snoozed_until": None,
            "updated_at": now,
        }
        if teams:
            values["team_id"] = case(teams, value=Conversation.id, else_=Conversation.team_id)
        # One statement per chunk; the condition makes an agent's manual accept at the same moment win.
        result = await session.execute(
            update(Conversation)
            .where(Conversation.id.in_(list(assignees)), Conversation.assignee_id.is_(None))
            .values(**values)
            .returning(Conversation.id)
            .execution_options(synchronize_session=False)
        )
        assigned.update(result.scalars().all())
    # Conversations this session already holds (the pipeline's, a transfer's) must not keep a stale assignee,
    # or a second event in the same transaction would route them again.
    for entry, chosen, queue, _l in planned:
        held = session.identity_map.get(identity_key(Conversation, entry.conversation_id))
        if held is not None and entry.conversation_id in assigned:
            set_committed_value(held, "assignee_id", chosen.agent.user_id)
            set_committed_value(held, "status", ConversationStatus.open.value)
            set_committed_value(held, "snoozed_until", None)
            if queue.team_id is not None:
                set_committed_value(held, "team_id", queue.team_id)

    decisions: list[Decision] = []
    for entry, chosen, queue, by_last_agent in planned:
        entry.left_at = now
        if entry.conversation_id not in assigned:
            # Someone took it by hand between our read and now: it no longer waits.
            _count(chosen, now, -1)
            entry.status = EntryStatus.abandoned
            entry.reason = "taken"
            continue
        agent = chosen.agent
        membership_row = member_of[(queue.id, agent.user_id)][1]
        membership_row.assigned_count = chosen.assigned_count
        membership_row.last_assigned_at = chosen.last_assigned_at
        agent_rows[agent.user_id].last_assigned_at = agent.last_assigned_at
        entry.status = EntryStatus.assigned
        entry.assigned_to_id = agent.user_id
        entry.next_notice_at = None
        decisions.append(
            Decision(
                entry_id=entry.id,
                queue_id=queue.id,
                conversation_id=entry.conversation_id,
                user_id=agent.user_id,
                waited_s=(now - entry.waiting_since).total_seconds(),
                last_agent=by_last_agent,
            )
        )
    await session.flush()
    if decisions and ctx is not None:
        await _announce(session, ctx, decisions)
    return decisions


def _count(member: Membership, now: datetime, step: int) -> None:
    member.agent.load += step
    member.assigned_count += step
    if step > 0:
        member.agent.last_assigned_at = now
        member.last_assigned_at = now


async def _announce(session: AsyncSession, ctx: Context, decisions: list[Decision]) -> None:
    from parley.conversations.pipeline import publish_conversation_updated
    from parley.realtime.service import publish_on_commit

    if "realtime.bus" not in ctx.extras:
        return
    rows = (
        await session.execute(
            select(Conversation, Contact)
            .join(Contact, Contact.id == Conversation.contact_id)
            .where(Conversation.id.in_([d.conversation_id for d in decisions]))
            .execution_options(populate_existing=True)
        )
    ).all()
    for conversation, contact in rows:
        publish_conversation_updated(session, ctx, conversation, contact)
    publish_on_commit(
        session,
        ctx,
        {
            "type": "routing.updated",
            "queue_ids": sorted({str(d.queue_id) for d in decisions}),
            "audience": {"permission": "operations.read"},
        },
    )
