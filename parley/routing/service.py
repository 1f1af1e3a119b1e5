"""What the rest of Parley calls: put a conversation in a queue, and react when agents free up.

Automation flows hand conversations over with :func:`enqueue_conversation`;
the inbound pipeline calls :func:`route_inbound`; the conversation service
calls the ``on_*`` hooks. All of them run inside the caller's write
transaction, and realtime events go out after it commits.
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timedelta
from typing import Any, cast

import structlog
from sqlalchemy import Table, and_, bindparam, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.channels.base import ChannelWindowClosedError, OutboundMessage, OutboundType
from parley.context import Context
from parley.exceptions import Conflict, NotFound, UnprocessableEntity
from parley.kit.types import utcnow
from parley.models import (
    ChannelAccount,
    Contact,
    Conversation,
    ConversationStatus,
    EntryStatus,
    Message,
    Priority,
    QueueEntry,
    QueueMember,
    RoutingQueue,
)
from parley.realtime.service import publish_on_commit
from parley.routing.engine import Decision, dispatch
from parley.routing.hours import hours_of
from parley.routing.rules import ContactCondition, contact_tag_names

log = structlog.get_logger()

WALLBOARD_AUDIENCE = {"permission": "operations.read"}
DEFAULT_WAITING = "You are number {position} in the queue. Expected wait: about {minutes} min."
DEFAULT_WAITING_UNKNOWN = (
    "You are number {position} in the queue. An agent will be with you as soon as possible."
)
DEFAULT_FULL = "All our agents are busy and the queue is full. Please try again later."
# Overflow chains longer than this are a configuration loop, not a plan.
MAX_HOPS = 5


async def enqueue_conversation(
    session: AsyncSession,
    ctx: Context,
    *,
    conversation_id: uuid.UUID,
    queue_id: uuid.UUID,
    note: str | None = None,
    actor_id: uuid.UUID | None = None,
) -> None:
    """Puts the conversation in the queue, tells the customer where they stand, and assigns at once if it can.

    Runs in the caller's write transaction. A conversation already waiting elsewhere moves
    (keeping its place in time); one with an agent is taken from that agent (a transfer).
    Raises NotFound / UnprocessableEntity for an unknown conversation, an unknown or
    inactive queue, or a resolved conversation.
    """
    await enqueue(
        session,
        ctx,
        conversation_id=conversation_id,
        queue_id=queue_id,
        note=note,
        actor_id=actor_id,
        reason="transfer" if actor_id else "flow",
    )


async def enqueue(
    session: AsyncSession,
    ctx: Context | None,
    *,
    conversation_id: uuid.UUID,
    queue_id: uuid.UUID,
    note: str | None = None,
    actor_id: uuid.UUID | None = None,
    reason: str = "rule",
    now: datetime | None = None,
    hops: int = 0,
) -> QueueEntry | None:
    """:func:`enqueue_conversation` with the reason recorded and an injectable clock (simulations)."""
    now = now or utcnow()
    conversation = await session.get(Conversation, conversation_id, populate_existing=True)
    if conversation is None:
        raise NotFound("Conversation not found")
    queue = await session.get(RoutingQueue, queue_id)
    if queue is None or not queue.is_active:
        raise UnprocessableEntity("Unknown or inactive queue")
    if conversation.status == ConversationStatus.resolved:
        raise UnprocessableEntity("A resolved conversation cannot wait in a queue")
    current = await session.scalar(
        select(QueueEntry)
        .where(QueueEntry.conversation_id == conversation.id, QueueEntry.status == EntryStatus.waiting)
        .with_for_update()
    )
    if current is not None and current.queue_id == queue.id and not note:
        return current  # already there: keep its place
    waiting_since = now
    if current is not None:
        current.status = EntryStatus.overflowed if reason == "overflow" else EntryStatus.transferred
        current.left_at = now
        waiting_since = current.waiting_since
        await session.flush()
    if conversation.assignee_id is not None:
        conversation.assignee_id = None  # transferred away from the agent: the queue decides now
    if note:
        session.add(
            Message.note(
                account_id=conversation.account_id,
                conversation_id=conversation.id,
                contact_id=conversation.contact_id,
                text=note,
                author_id=actor_id,
                extra={"transfer_to_queue": str(queue.id)},
                created_at=now,
            )
        )
    if queue.max_length is not None and await waiting_count(session, queue.id) >= queue.max_length:
        if reason == "transfer" and queue.overflow_queue_id is None:
            # A person moving it hears so, and keeps the conversation, rather than the customer being turned away.
            raise Conflict(f"The queue {queue.name} is full")
        if queue.overflow_queue_id is not None and hops < MAX_HOPS:
            await session.flush()
            return await enqueue(
                session,
                ctx,
                conversation_id=conversation.id,
                queue_id=queue.overflow_queue_id,
                actor_id=actor_id,
                reason="full",
                now=now,
                hops=hops + 1,
            )
        session.add(
            QueueEntry(
                queue_id=queue.id,
                conversation_id=conversation.id,
                contact_id=conversation.contact_id,
                status=EntryStatus.rejected,
                entered_at=now,
                waiting_since=waiting_since,
                left_at=now,
                reason="full",
                actor_id=actor_id,
            )
        )
        await send_text(session, ctx, conversation, queue.full_reply or DEFAULT_FULL)
        await session.flush()
        _changed(session, ctx, queue.id)
        return None
    contact = await session.get(Contact, conversation.contact_id)
    if contact is None:
        raise NotFound("Contact not found")
    vip = ContactCondition.model_validate(queue.vip_rule or {})
    priority = 0
    if not vip.empty and vip.matches(
        await contact_tag_names(session, contact.id), dict(contact.attributes or {})
    ):
        priority = 1
    entry = QueueEntry(
        id=uuid.uuid4(),
        queue_id=queue.id,
        conversation_id=conversation.id,
        contact_id=conversation.contact_id,
        status=EntryStatus.waiting,
        priority=priority,
        entered_at=now,
        waiting_since=waiting_since,
        note=note or "",
        actor_id=actor_id,
        reason=reason,
    )
    session.add(entry)
    await session.flush()
    await dispatch(session, ctx, queue_ids=[queue.id], now=now)
    _changed(session, ctx, queue.id)
    if entry.status != EntryStatus.waiting:
        return entry
    if not hours_of(queue.hours).is_open(now):
        if queue.off_hours_reply:
            await send_text(session, ctx, conversation, queue.off_hours_reply)
        return entry
    await notify_position(session, ctx, entry, queue, conversation, now=now)
    return entry


async def waiting_count(session: AsyncSession, queue_id: uuid.UUID) -> int:
    return int(
        await session.scalar(
            select(func.count())
            .select_from(QueueEntry)
            .where(QueueEntry.queue_id == queue_id, QueueEntry.status == EntryStatus.waiting)
        )
        or 0
    )


async def position_of(session: AsyncSession, entry: QueueEntry) -> int:
    ahead = await session.scalar(
        select(func.count())
        .select_from(QueueEntry)
        .where(
            QueueEntry.queue_id == entry.queue_id,
            QueueEntry.status == EntryStatus.waiting,
            QueueEntry.id != entry.id,
            or_(
                QueueEntry.priority > entry.priority,
                and_(QueueEntry.priority == entry.priority, QueueEntry.waiting_since < entry.waiting_since),
                and_(
                    QueueEntry.priority == entry.priority,
                    QueueEntry.waiting_since == entry.waiting_since,
                    QueueEntry.entered_at < entry.entered_at,
                ),
            ),
        )
    )
    return int(ahead or 0) + 1


async def expected_wait_minutes(
    session: AsyncSession, queue_id: uuid.UUID, position: int, *, now: datetime
) -> int | None:
    """From the last hour's throughput of the queue; None when nothing was assigned in that hour."""
    served = int(
        await session.scalar(
            select(func.count())
            .select_from(QueueEntry)
            .where(
                QueueEntry.queue_id == queue_id,
                QueueEntry.status == EntryStatus.assigned,
                QueueEntry.left_at >= now - timedelta(hours=1),
            )
        )
        or 0
    )
    if not served:
        return None
    return max(1, math.ceil(position * 60 / served))


async def notify_position(
    session: AsyncSession,
    ctx: Context | None,
    entry: QueueEntry,
    queue: RoutingQueue,
    conversation: Conversation,
    *,
    now: datetime,
) -> Message | None:
    position = await position_of(session, entry)
    minutes = await expected_wait_minutes(session, queue.id, position, now=now)
    template = queue.waiting_reply or (DEFAULT_WAITING if minutes is not None else DEFAULT_WAITING_UNKNOWN)
    try:
        text = template.format(position=position, minutes=minutes if minutes is not None else "?")
    except (KeyError, IndexError, ValueError):
        text = template  # an administrator's text with stray braces is still worth sending
    entry.next_notice_at = (
        now + timedelta(seconds=queue.notice_interval_s) if queue.notice_interval_s else None
    )
    return await send_text(session, ctx, conversation, text)


async def send_text(
    session: AsyncSession, ctx: Context | None, conversation: Conversation, text: str
) -> Message | None:
    """An automated text to the customer through the delivery engine; skipped when the channel forbids it."""
    from parley.conversations.pipeline import message_summary
    from parley.conversations.service import conversation as conversations
    from parley.conversations.window import check_reply_allowed
    from parley.delivery.service import enqueue as deliver
    from parley.delivery.service import new_idempotency_key

    if not text.strip():
        return None
    account = await session.get(ChannelAccount, conversation.account_id)
    if account is None:
        return None
    window = await conversations.window(session, conversation, account)
    try:
        if not _fresh_interaction(session, conversation.id):
            check_reply_allowed(window, OutboundType.text)
        peer_id = await conversations._peer_id(session, conversation, account)
    except (ChannelWindowClosedError, UnprocessableEntity) as exc:
        log.info("routing.notice_skipped", conversation_id=str(conversation.id), reason=str(exc))
        return None
    message = await deliver(
        session,
        account=account,
        message=OutboundMessage(
            to=peer_id, type=OutboundType.text, text=text, idempotency_key=new_idempotency_key()
        ),
        priority=Priority.automated,
        conversation_id=conversation.id,
        contact_id=conversation.contact_id,
    )
    if ctx is not None:
        publish_on_commit(
            session,
            ctx,
            {
                "type": "message.created",
                "message": message_summary(message),
                "audience": {"permission": "conversations.read"},
            },
        )
    return message


_INTERACTION = "routing.interaction"
# WeChat lets an account answer a menu click, a follow or a QR scan with a few messages within a minute
# (PROTOCOLS.md 1.7.3), even when the customer has never written: enough for the queue notice.
INTERACTION_GRACE = timedelta(seconds=60)


def _fresh_interaction(session: AsyncSession, conversation_id: uuid.UUID) -> bool:
    at: datetime | None = session.info.get(_INTERACTION, {}).get(conversation_id)
    return at is not None and at >= utcnow() - INTERACTION_GRACE


def _changed(session: AsyncSession, ctx: Context | None, *queue_ids: uuid.UUID) -> None:
    if ctx is not None:
        publish_on_commit(
            session,
            ctx,
            {
                "type": "routing.updated",
                "queue_ids": [str(q) for q in queue_ids],
                "audience": WALLBOARD_AUDIENCE,
            },
        )


# --- agents freeing up, conversations leaving the queue ------------------------------------------


async def agent_queue_ids(session: AsyncSession, user_id: uuid.UUID) -> list[uuid.UUID]:
    return list(
        (await session.scalars(select(QueueMember.queue_id).where(QueueMember.user_id == user_id))).all()
    )


async def on_agent_available(
    session: AsyncSession, ctx: Context | None, user_id: uuid.UUID, *, now: datetime | None = None
) -> list[Decision]:
    """Presence went online, capacity grew or a conversation ended: hand the agent's queues' next ones out."""
    queue_ids = await agent_queue_ids(session, user_id)
    if not queue_ids:
        return []
    return await dispatch(session, ctx, queue_ids=queue_ids, user_ids=[user_id], now=now)


async def on_conversation_closed(
    session: AsyncSession,
    ctx: Context | None,
    conversation: Conversation,
    *,
    previous_assignee: uuid.UUID | None,
    now: datetime | None = None,
) -> None:
    """Resolved or snoozed: a waiting one leaves the queue; its agent has a free slot for the next."""
    now = now or utcnow()
    entry = await session.scalar(
        select(QueueEntry).where(
            QueueEntry.conversation_id == conversation.id, QueueEntry.status == EntryStatus.waiting
        )
    )
    if entry is not None and conversation.status == ConversationStatus.resolved:
        entry.status = EntryStatus.abandoned
        entry.left_at = now
        entry.reason = "resolved"
        _changed(session, ctx, entry.queue_id)
    await session.flush()
    if previous_assignee is not None:
        await on_agent_available(session, ctx, previous_assignee, now=now)


async def on_conversation_taken(
    session: AsyncSession, ctx: Context | None, conversation_id: uuid.UUID, user_id: uuid.UUID
) -> None:
    """An agent took a waiting conversation by hand: it leaves the queue as answered by them."""
    entry = await session.scalar(
        select(QueueEntry).where(
            QueueEntry.conversation_id == conversation_id, QueueEntry.status == EntryStatus.waiting
        )
    )
    if entry is not None:
        entry.status = EntryStatus.assigned
        entry.assigned_to_id = user_id
        entry.left_at = utcnow()
        entry.reason = entry.reason or "accepted"
        _changed(session, ctx, entry.queue_id)


_ENTRIES = cast(Table, QueueEntry.__table__)
# Asked for every inbound message: prebuilt, so SQLAlchemy neither rebuilds nor re-keys it.
_IS_WAITING = select(_ENTRIES.c.id).where(
    _ENTRIES.c.conversation_id == bindparam("conversation_id"), _ENTRIES.c.status == EntryStatus.waiting
)


async def is_waiting(session: AsyncSession, conversation_id: uuid.UUID) -> bool:
    return (await session.scalar(_IS_WAITING, {"conversation_id": conversation_id})) is not None


# --- the periodic pass: overflow, dispatch (safety net), position notices -----------------------


async def tick(session: AsyncSession, ctx: Context | None, *, now: datetime | None = None) -> dict[str, Any]:
    now = now or utcnow()
    overflowed = 0
    rows = (
        await session.execute(
            select(QueueEntry, RoutingQueue)
            .join(RoutingQueue, RoutingQueue.id == QueueEntry.queue_id)
            .where(
                QueueEntry.status == EntryStatus.waiting,
                RoutingQueue.overflow_queue_id.is_not(None),
                RoutingQueue.overflow_after_s.is_not(None),
            )
            .order_by(QueueEntry.waiting_since)
        )
    ).all()
    for entry, queue in rows:
        if queue.overflow_after_s is None or queue.overflow_queue_id is None:
            continue
        if entry.entered_at + timedelta(seconds=queue.overflow_after_s) <= now:
            await enqueue(
                session,
                ctx,
                conversation_id=entry.conversation_id,
                queue_id=queue.overflow_queue_id,
                reason="overflow",
                now=now,
            )
            overflowed += 1
    decisions = await dispatch(session, ctx, now=now)
    notices = 0
    due = (
        await session.execute(
            select(QueueEntry, RoutingQueue, Conversation)
            .join(RoutingQueue, RoutingQueue.id == QueueEntry.queue_id)
            .join(Conversation, Conversation.id == QueueEntry.conversation_id)
            .where(QueueEntry.status == EntryStatus.waiting, QueueEntry.next_notice_at <= now)
            .order_by(QueueEntry.next_notice_at)
            .limit(500)
        )
    ).all()
    for entry, queue, conversation in due:
        if hours_of(queue.hours).is_open(now):
            await notify_position(session, ctx, entry, queue, conversation, now=now)
            notices += 1
        else:
            entry.next_notice_at = None
    await session.flush()
    return {"overflowed": overflowed, "assigned": len(decisions), "notices": notices}


# --- the inbound pipeline's hook: entry rules --------------------------------------------------


async def route_inbound(
    session: AsyncSession, ctx: Context | None, *, account: ChannelAccount, event: Any, outcome: Any
) -> QueueEntry | None:
    """Evaluates the entry rules for one processed inbound event (a message, a menu click, a QR scan).

    ``event`` is the normalized :class:`parley.channels.base.InboundEvent`, ``outcome`` the
    pipeline's Outcome. Conversations that already have an agent or a queue are left alone.
    """
    from parley.channels.base import InboundKind
    from parley.conversations.pipeline import _conversation, publish_conversation_updated
    from parley.routing.rules import Trigger, first_matching_rule

    contact: Contact | None = outcome.contact
    if contact is None:
        return None
    if event.kind == InboundKind.message:
        trigger = Trigger(account_id=account.id, event="message", text=event.text or event.recognition or "")
    elif event.type == "menu_click":
        trigger = Trigger(
            account_id=account.id, event="menu_click", event_key=str(event.data.get("event_key", ""))
        )
    elif event.type in ("scan", "subscribe") and event.data.get("scene"):
        trigger = Trigger(account_id=account.id, event="qr_scene", event_key=str(event.data.get("scene", "")))
    else:
        return None
    conversation: Conversation | None = outcome.conversation
    if conversation is not None and (conversation.assignee_id is not None or await _queued(session, outcome)):
        return None
    rule = await first_matching_rule(session, trigger=trigger, contact=contact)
    if rule is None:
        return None
    if conversation is None:
        # A menu click or a scan asking for an agent opens the conversation the agent will answer in.
        conversation, _opened = await _conversation(session, contact=contact, account=account, now=utcnow())
        if conversation.assignee_id is not None or await is_waiting(session, conversation.id):
            return None
        conversation.last_message_at = conversation.last_message_at or event.occurred_at
        session.info.setdefault(_INTERACTION, {})[conversation.id] = event.occurred_at
        await session.flush()
        if ctx is not None:
            publish_conversation_updated(session, ctx, conversation, contact)
    return await enqueue(session, ctx, conversation_id=conversation.id, queue_id=rule.queue_id, reason="rule")


async def _queued(session: AsyncSession, outcome: Any) -> bool:
    """Whether the outcome's conversation waits in a queue; the pipeline usually found out already."""
    known: bool | None = getattr(outcome, "queued", None)
    if known is not None:
        return known
    return await is_waiting(session, outcome.conversation.id)


# --- transfers and supervisor take-over -------------------------------------------------------


async def transfer(
    session: AsyncSession,
    ctx: Context | None,
    *,
    actor: Any,
    conversation_id: uuid.UUID,
    queue_id: uuid.UUID | None,
    user_id: uuid.UUID | None,
    note: str | None,
) -> Conversation:
    """Moves a conversation to another queue or agent, with a note for whoever picks it up.

    Agents move their own (or unassigned) conversations; moving someone else's, and
    handing an agent more than their capacity, is for supervisors (``operations.write``).
    """
    from parley.auth.permissions import Permission
    from parley.auth.service import audit
    from parley.conversations.pipeline import publish_conversation_updated
    from parley.exceptions import Forbidden
    from parley.models import RoutingAgent, User
    from parley.routing.engine import capacities, loads

    if (queue_id is None) == (user_id is None):
        raise UnprocessableEntity("Transfer to either a queue or an agent")
    conversation = await session.get(Conversation, conversation_id, populate_existing=True)
    if conversation is None:
        raise NotFound("Conversation not found")
    if conversation.status == ConversationStatus.resolved:
        raise UnprocessableEntity("Reopen the conversation before transferring it")
    supervisor = actor.can(Permission.operations_write)
    previous = conversation.assignee_id
    if previous not in (None, actor.user.id) and not supervisor:
        raise Forbidden("Only supervisors move other agents' conversations")
    if queue_id is not None:
        await enqueue(
            session,
            ctx,
            conversation_id=conversation.id,
            queue_id=queue_id,
            note=note,
            actor_id=actor.user.id,
            reason="transfer",
        )
    else:
        assert user_id is not None  # noqa: S101  (checked above)
        target = await session.get(User, user_id)
        if target is None or not target.is_active:
            raise UnprocessableEntity("Unknown or deactivated agent")
        if target.id == previous:
            raise UnprocessableEntity("The conversation is already with this agent")
        # Lock the agent as the engine does, so a transfer and an assignment cannot both take the last slot.
        if await session.get(RoutingAgent, target.id) is None:
            session.add(RoutingAgent(user_id=target.id))
            await session.flush()
        own = await session.scalar(
            select(RoutingAgent.capacity).where(RoutingAgent.user_id == target.id).with_for_update()
        )
        capacity = (await capacities(session, [(target.id, target.role_id, own)]))[target.id]
        load = (await loads(session, [target.id])).get(target.id, 0)
        if load >= capacity and not supervisor:
            raise Conflict(f"{target.name} already has {load} conversations, their limit")
        entry = await session.scalar(
            select(QueueEntry)
            .where(QueueEntry.conversation_id == conversation.id, QueueEntry.status == EntryStatus.waiting)
            .with_for_update()
        )
        if entry is not None:
            entry.status = EntryStatus.assigned
            entry.assigned_to_id = target.id
            entry.left_at = utcnow()
            entry.reason = "transfer"
            _changed(session, ctx, entry.queue_id)
        conversation.assignee_id = target.id
        if conversation.status == ConversationStatus.snoozed:
            conversation.status = ConversationStatus.open
            conversation.snoozed_until = None
        if note:
            session.add(
                Message.note(
                    account_id=conversation.account_id,
                    conversation_id=conversation.id,
                    contact_id=conversation.contact_id,
                    text=note,
                    author_id=actor.user.id,
                    extra={"transfer_to_agent": str(target.id)},
                )
            )
        await session.flush()
    await audit.record(
        session,
        actor=actor,
        action="conversation.transfer",
        target_type="conversation",
        target_id=conversation.id,
        changes={
            "from_agent": str(previous) if previous else None,
            "to_queue": str(queue_id) if queue_id else None,
            "to_agent": str(user_id) if user_id else None,
            "note": note or "",
        },
    )
    await session.refresh(conversation)
    if ctx is not None:
        contact = await session.get(Contact, conversation.contact_id)
        publish_conversation_updated(session, ctx, conversation, contact)
    if previous is not None and previous != conversation.assignee_id:
        await on_agent_available(session, ctx, previous)
    return conversation
