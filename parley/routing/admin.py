"""Administering routing: queues, members and skills, capacity, entry rules and their order.

Every change is audited here, in the caller's transaction, whichever surface (API or console) made it.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from parley.auth.service import Principal, audit
from parley.context import Context
from parley.exceptions import Conflict, NotFound, UnprocessableEntity
from parley.models import EntryRule, QueueMember, Role, RoleCapacity, RoutingAgent, RoutingQueue, Team, User
from parley.routing.rules import rules_changed
from parley.routing.schemas import CapacityWrite, MemberRead, MemberWrite, QueueWrite, RuleWrite
from parley.routing.service import on_agent_available


async def _audit(
    session: AsyncSession,
    actor: Principal | None,
    action: str,
    target_type: str,
    target_id: uuid.UUID | None,
    changes: dict[str, Any] | None = None,
) -> None:
    await audit.record(
        session,
        actor=actor,
        action=f"routing.{action}",
        target_type=target_type,
        target_id=target_id,
        changes=changes,
    )


async def _check_queue(session: AsyncSession, data: QueueWrite, queue_id: uuid.UUID | None) -> None:
    if data.team_id is not None and await session.get(Team, data.team_id) is None:
        raise UnprocessableEntity("Unknown team")
    if data.overflow_queue_id is not None:
        if data.overflow_queue_id == queue_id:
            raise UnprocessableEntity("A queue cannot overflow into itself")
        if await session.get(RoutingQueue, data.overflow_queue_id) is None:
            raise UnprocessableEntity("Unknown overflow queue")
    if (data.overflow_after_s is None) != (
        data.overflow_queue_id is None
    ) and data.overflow_after_s is not None:
        raise UnprocessableEntity("Overflow needs both a wait limit and a queue to move to")
    clash = await session.scalar(
        select(RoutingQueue.id).where(func.lower(RoutingQueue.name) == data.name.lower())
    )
    if clash is not None and clash != queue_id:
        raise Conflict("A queue with this name already exists")


def _apply(queue: RoutingQueue, data: QueueWrite) -> None:
    values = data.model_dump(mode="json")
    for key, value in values.items():
        if key in ("team_id", "overflow_queue_id"):
            value = getattr(data, key)
        setattr(queue, key, value)


async def create_queue(
    session: AsyncSession, data: QueueWrite, *, actor: Principal | None = None
) -> RoutingQueue:
    await _check_queue(session, data, None)
    queue = RoutingQueue(id=uuid.uuid4())
    _apply(queue, data)
    session.add(queue)
    await session.flush()
    await _audit(session, actor, "queue.create", "routing_queue", queue.id, {"name": queue.name})
    return queue


async def update_queue(
    session: AsyncSession, queue_id: uuid.UUID, data: QueueWrite, *, actor: Principal | None = None
) -> RoutingQueue:
    queue = await session.get(RoutingQueue, queue_id)
    if queue is None:
        raise NotFound("Queue not found")
    await _check_queue(session, data, queue_id)
    _apply(queue, data)
    await session.flush()
    await _audit(session, actor, "queue.update", "routing_queue", queue_id, data.model_dump(mode="json"))
    return queue


async def delete_queue(session: AsyncSession, queue_id: uuid.UUID, *, actor: Principal | None = None) -> None:
    queue = await session.get(RoutingQueue, queue_id)
    if queue is None:
        raise NotFound("Queue not found")
    await session.delete(queue)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict("The queue is still in use") from exc
    rules_changed(session)
    await _audit(session, actor, "queue.delete", "routing_queue", queue_id)


async def ensure_agent(session: AsyncSession, user_id: uuid.UUID) -> RoutingAgent:
    agent = await session.get(RoutingAgent, user_id)
    if agent is None:
        agent = RoutingAgent(user_id=user_id)
        session.add(agent)
        await session.flush()
    return agent


async def set_member(
    session: AsyncSession,
    ctx: Context | None,
    queue_id: uuid.UUID,
    data: MemberWrite,
    *,
    actor: Principal | None = None,
) -> QueueMember:
    if await session.get(RoutingQueue, queue_id) is None:
        raise NotFound("Queue not found")
    user = await session.get(User, data.user_id)
    if user is None or not user.is_active:
        raise UnprocessableEntity("Unknown or deactivated agent")
    await ensure_agent(session, user.id)
    member = await session.get(QueueMember, (queue_id, user.id))
    if member is None:
        member = QueueMember(queue_id=queue_id, user_id=user.id, assigned_count=0)
        session.add(member)
    member.skill_level = data.skill_level
    member.weight = data.weight
    await session.flush()
    await _audit(session, actor, "member.set", "routing_queue", queue_id, data.model_dump(mode="json"))
    await on_agent_available(session, ctx, user.id)
    return member


async def remove_member(
    session: AsyncSession, queue_id: uuid.UUID, user_id: uuid.UUID, *, actor: Principal | None = None
) -> None:
    result = await session.execute(
        delete(QueueMember).where(QueueMember.queue_id == queue_id, QueueMember.user_id == user_id)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        raise NotFound("Not a member of this queue")
    await _audit(session, actor, "member.remove", "routing_queue", queue_id, {"user_id": str(user_id)})


async def members(session: AsyncSession, queue_id: uuid.UUID) -> list[MemberRead]:
    rows = (
        await session.execute(
            select(QueueMember, User)
            .join(User, User.id == QueueMember.user_id)
            .where(QueueMember.queue_id == queue_id)
            .order_by(User.name)
        )
    ).all()
    return [
        MemberRead(
            user_id=user.id,
            name=user.name,
            presence=user.presence,
            skill_level=member.skill_level,
            weight=member.weight,
            assigned_count=member.assigned_count,
        )
        for member, user in rows
    ]


async def set_agent_capacity(
    session: AsyncSession,
    ctx: Context | None,
    user_id: uuid.UUID,
    data: CapacityWrite,
    *,
    actor: Principal | None = None,
) -> RoutingAgent:
    if await session.get(User, user_id) is None:
        raise NotFound("User not found")
    agent = await ensure_agent(session, user_id)
    agent.capacity = data.capacity
    await session.flush()
    await _audit(session, actor, "capacity.agent", "user", user_id, {"capacity": data.capacity})
    await on_agent_available(session, ctx, user_id)
    return agent


async def set_role_capacity(
    session: AsyncSession,
    ctx: Context | None,
    role_id: uuid.UUID,
    data: CapacityWrite,
    *,
    actor: Principal | None = None,
) -> None:
    if await session.get(Role, role_id) is None:
        raise NotFound("Role not found")
    row = await session.get(RoleCapacity, role_id)
    if data.capacity is None:
        if row is not None:
            await session.delete(row)
    elif row is None:
        session.add(RoleCapacity(role_id=role_id, capacity=data.capacity))
    else:
        row.capacity = data.capacity
    await session.flush()
    await _audit(session, actor, "capacity.role", "role", role_id, {"capacity": data.capacity})
    users = (await session.scalars(select(User.id).where(User.role_id == role_id))).all()
    for user_id in users:
        await on_agent_available(session, ctx, user_id)


async def create_rule(session: AsyncSession, data: RuleWrite, *, actor: Principal | None = None) -> EntryRule:
    if await session.get(RoutingQueue, data.queue_id) is None:
        raise UnprocessableEntity("Unknown queue")
    last = await session.scalar(select(func.max(EntryRule.position)))
    rule = EntryRule(
        id=uuid.uuid4(),
        name=data.name,
        queue_id=data.queue_id,
        is_active=data.is_active,
        conditions=data.conditions.model_dump(mode="json", exclude_defaults=True),
        position=(last or 0) + 1,
    )
    session.add(rule)
    await session.flush()
    rules_changed(session)
    await _audit(session, actor, "rule.create", "routing_rule", rule.id, data.model_dump(mode="json"))
    return rule


async def update_rule(
    session: AsyncSession, rule_id: uuid.UUID, data: RuleWrite, *, actor: Principal | None = None
) -> EntryRule:
    rule = await session.get(EntryRule, rule_id)
    if rule is None:
        raise NotFound("Rule not found")
    if await session.get(RoutingQueue, data.queue_id) is None:
        raise UnprocessableEntity("Unknown queue")
    rule.name, rule.queue_id, rule.is_active = data.name, data.queue_id, data.is_active
    rule.conditions = data.conditions.model_dump(mode="json", exclude_defaults=True)
    await session.flush()
    rules_changed(session)
    await _audit(session, actor, "rule.update", "routing_rule", rule_id, data.model_dump(mode="json"))
    return rule


async def delete_rule(session: AsyncSession, rule_id: uuid.UUID, *, actor: Principal | None = None) -> None:
    rule = await session.get(EntryRule, rule_id)
    if rule is None:
        raise NotFound("Rule not found")
    await session.delete(rule)
    await session.flush()
    rules_changed(session)
    await _audit(session, actor, "rule.delete", "routing_rule", rule_id)


async def order_rules(
    session: AsyncSession, ids: list[uuid.UUID], *, actor: Principal | None = None
) -> list[EntryRule]:
    rules = {r.id: r for r in (await session.scalars(select(EntryRule))).all()}
    if set(ids) != set(rules) or len(ids) != len(rules):
        raise UnprocessableEntity("Give every rule exactly once, in the new order")
    for position, rule_id in enumerate(ids, start=1):
        rules[rule_id].position = position
    await session.flush()
    rules_changed(session)
    await _audit(session, actor, "rule.order", "routing_rule", None, {"ids": [str(i) for i in ids]})
    return [rules[i] for i in ids]
