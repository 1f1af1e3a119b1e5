"""REST API for routing under ``/api/v1/routing`` and transfers under ``/api/v1/conversations``.

Administering queues, members, capacity and entry rules needs ``operations.write``;
the wallboard ``operations.read``; transfers ``conversations.write`` (moving other
agents' conversations, and take-over, need ``operations.write``). Changes are audited.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, status
from sqlalchemy import select

from parley.auth.dependencies import DBSession, authorize
from parley.auth.permissions import Permission
from parley.auth.service import Principal
from parley.context import Context
from parley.conversations.pipeline import conversation_summary
from parley.exceptions import NotFound
from parley.models import EntryRule, RoutingQueue
from parley.routing import admin
from parley.routing.schemas import (
    CapacityWrite,
    MemberRead,
    MemberWrite,
    QueueRead,
    QueueWrite,
    RuleOrder,
    RuleRead,
    RuleWrite,
    Transfer,
    Wallboard,
)
from parley.routing.service import transfer
from parley.routing.wallboard import wallboard

RoutingRead = Annotated[Principal, Depends(authorize(Permission.operations_read))]
RoutingWrite = Annotated[Principal, Depends(authorize(Permission.operations_write))]
ConversationsWrite = Annotated[Principal, Depends(authorize(Permission.conversations_write))]

router = APIRouter(prefix="/api/v1", tags=["routing"])


def _ctx(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


@router.get("/routing/wallboard", response_model=Wallboard)
async def read_wallboard(_: RoutingRead, session: DBSession) -> Wallboard:
    return await wallboard(session)


@router.get("/routing/queues", response_model=list[QueueRead])
async def list_queues(_: RoutingRead, session: DBSession) -> list[RoutingQueue]:
    return list((await session.scalars(select(RoutingQueue).order_by(RoutingQueue.name))).all())


@router.post("/routing/queues", response_model=QueueRead, status_code=status.HTTP_201_CREATED)
async def create_queue(principal: RoutingWrite, session: DBSession, data: QueueWrite) -> RoutingQueue:
    queue = await admin.create_queue(session, data, actor=principal)
    return queue


@router.get("/routing/queues/{queue_id}", response_model=QueueRead)
async def read_queue(_: RoutingRead, session: DBSession, queue_id: uuid.UUID) -> RoutingQueue:
    queue = await session.get(RoutingQueue, queue_id)
    if queue is None:
        raise NotFound("Queue not found")
    return queue


@router.put("/routing/queues/{queue_id}", response_model=QueueRead)
async def update_queue(
    principal: RoutingWrite, session: DBSession, queue_id: uuid.UUID, data: QueueWrite
) -> RoutingQueue:
    queue = await admin.update_queue(session, queue_id, data, actor=principal)
    return queue


@router.delete("/routing/queues/{queue_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_queue(principal: RoutingWrite, session: DBSession, queue_id: uuid.UUID) -> None:
    await admin.delete_queue(session, queue_id, actor=principal)


@router.get("/routing/queues/{queue_id}/members", response_model=list[MemberRead])
async def list_members(_: RoutingRead, session: DBSession, queue_id: uuid.UUID) -> list[MemberRead]:
    if await session.get(RoutingQueue, queue_id) is None:
        raise NotFound("Queue not found")
    return await admin.members(session, queue_id)


@router.put("/routing/queues/{queue_id}/members", status_code=status.HTTP_204_NO_CONTENT)
async def put_member(
    request: Request, principal: RoutingWrite, session: DBSession, queue_id: uuid.UUID, data: MemberWrite
) -> None:
    await admin.set_member(session, _ctx(request), queue_id, data, actor=principal)


@router.delete("/routing/queues/{queue_id}/members/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_member(
    principal: RoutingWrite, session: DBSession, queue_id: uuid.UUID, user_id: uuid.UUID
) -> None:
    await admin.remove_member(session, queue_id, user_id, actor=principal)


@router.put("/routing/agents/{user_id}/capacity", status_code=status.HTTP_204_NO_CONTENT)
async def put_agent_capacity(
    request: Request, principal: RoutingWrite, session: DBSession, user_id: uuid.UUID, data: CapacityWrite
) -> None:
    await admin.set_agent_capacity(session, _ctx(request), user_id, data, actor=principal)


@router.put("/routing/roles/{role_id}/capacity", status_code=status.HTTP_204_NO_CONTENT)
async def put_role_capacity(
    request: Request, principal: RoutingWrite, session: DBSession, role_id: uuid.UUID, data: CapacityWrite
) -> None:
    await admin.set_role_capacity(session, _ctx(request), role_id, data, actor=principal)


@router.get("/routing/rules", response_model=list[RuleRead])
async def list_rules(_: RoutingRead, session: DBSession) -> list[EntryRule]:
    return list((await session.scalars(select(EntryRule).order_by(EntryRule.position, EntryRule.name))).all())


@router.post("/routing/rules", response_model=RuleRead, status_code=status.HTTP_201_CREATED)
async def create_rule(principal: RoutingWrite, session: DBSession, data: RuleWrite) -> EntryRule:
    rule = await admin.create_rule(session, data, actor=principal)
    return rule


@router.put("/routing/rules/order", response_model=list[RuleRead])
async def order_rules(principal: RoutingWrite, session: DBSession, data: RuleOrder) -> list[EntryRule]:
    rules = await admin.order_rules(session, data.ids, actor=principal)
    return rules


@router.put("/routing/rules/{rule_id}", response_model=RuleRead)
async def update_rule(
    principal: RoutingWrite, session: DBSession, rule_id: uuid.UUID, data: RuleWrite
) -> EntryRule:
    rule = await admin.update_rule(session, rule_id, data, actor=principal)
    return rule


@router.delete("/routing/rules/{rule_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_rule(principal: RoutingWrite, session: DBSession, rule_id: uuid.UUID) -> None:
    await admin.delete_rule(session, rule_id, actor=principal)


@router.post("/conversations/{conversation_id}/transfer")
async def transfer_conversation(
    request: Request,
    principal: ConversationsWrite,
    session: DBSession,
    conversation_id: uuid.UUID,
    data: Transfer,
) -> dict[str, object]:
    """To a queue (``queue_id``) or an agent (``user_id``), with an optional ``note`` for them."""
    conversation = await transfer(
        session,
        _ctx(request),
        actor=principal,
        conversation_id=conversation_id,
        queue_id=data.queue_id,
        user_id=data.user_id,
        note=data.note,
    )
    return conversation_summary(conversation)


@router.post("/conversations/{conversation_id}/takeover")
async def take_over(
    request: Request, principal: RoutingWrite, session: DBSession, conversation_id: uuid.UUID
) -> dict[str, object]:
    """A supervisor takes the conversation over from whoever has it."""
    conversation = await transfer(
        session,
        _ctx(request),
        actor=principal,
        conversation_id=conversation_id,
        queue_id=None,
        user_id=principal.user.id,
        note=None,
    )
    return conversation_summary(conversation)
