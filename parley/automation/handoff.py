"""A flow (or a menu button) handing its conversation to people: it enters a routing queue.

The hand-off is also written on the contact's timeline, so the 360° view shows
where the bot stopped and why.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.context import Context
from parley.conversations.pipeline import publish_conversation_updated
from parley.exceptions import NotFound
from parley.kit.types import utcnow
from parley.models import Contact, Conversation, ConversationStatus, TimelineEvent
from parley.routing.service import enqueue_conversation


async def hand_off(
    session: AsyncSession, ctx: Context, *, conversation_id: uuid.UUID, queue_id: uuid.UUID, note: str | None
) -> None:
    conversation = await session.get(Conversation, conversation_id)
    if conversation is None:
        raise NotFound("No such conversation")
    conversation.status = ConversationStatus.open
    conversation.snoozed_until = None
    contact = await session.get(Contact, conversation.contact_id)
    session.add(
        TimelineEvent(
            contact_id=conversation.contact_id,
            account_id=conversation.account_id,
            type="handoff",
            data={"queue_id": str(queue_id), "note": note, "conversation_id": str(conversation_id)},
            occurred_at=utcnow(),
        )
    )
    await session.flush()
    await enqueue_conversation(session, ctx, conversation_id=conversation_id, queue_id=queue_id, note=note)
    publish_conversation_updated(session, ctx, conversation, contact)


async def active_conversation(
    session: AsyncSession, *, contact_id: uuid.UUID, account_id: uuid.UUID
) -> Conversation:
    """The contact's unresolved conversation on the account, started if there is none (people need one)."""
    conversation = await session.scalar(
        select(Conversation).where(
            Conversation.contact_id == contact_id,
            Conversation.account_id == account_id,
            Conversation.status != ConversationStatus.resolved,
        )
    )
    if conversation is None:
        conversation = Conversation(
            id=uuid.uuid4(), contact_id=contact_id, account_id=account_id, status=ConversationStatus.open
        )
        session.add(conversation)
        await session.flush()
    return conversation
