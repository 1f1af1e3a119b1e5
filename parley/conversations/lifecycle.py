"""Time-driven conversation changes, computed from stored timestamps so a restart loses none."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.context import Context
from parley.conversations.pipeline import publish_conversation_updated
from parley.kit.types import utcnow
from parley.models import AppSetting, Conversation, ConversationStatus

IDLE_CLOSE_KEY = "inbox.idle_close_minutes"
DEFAULT_IDLE_CLOSE_MINUTES = 24 * 60
BATCH = 500


async def idle_close_minutes(session: AsyncSession) -> int:
    row = await session.get(AppSetting, IDLE_CLOSE_KEY)
    return int(row.value) if row is not None else DEFAULT_IDLE_CLOSE_MINUTES


async def set_idle_close_minutes(session: AsyncSession, minutes: int) -> None:
    row = await session.get(AppSetting, IDLE_CLOSE_KEY)
    if row is None:
        session.add(AppSetting(key=IDLE_CLOSE_KEY, value=minutes))
    else:
        row.value = minutes
    await session.flush()


async def wake_snoozed(session: AsyncSession, ctx: Context) -> int:
    now = utcnow()
    rows = (
        await session.scalars(
            select(Conversation)
            .where(Conversation.status == ConversationStatus.snoozed, Conversation.snoozed_until <= now)
            .limit(BATCH)
        )
    ).all()
    for conversation in rows:
        conversation.status = ConversationStatus.open
        conversation.snoozed_until = None
        publish_conversation_updated(session, ctx, conversation)
    return len(rows)


async def close_idle(session: AsyncSession, ctx: Context) -> int:
    """Closes open or pending conversations with no message for the configured time."""
    cutoff = utcnow() - timedelta(minutes=await idle_close_minutes(session))
    rows = (
        await session.scalars(
            select(Conversation)
            .where(
                Conversation.status.in_([ConversationStatus.open, ConversationStatus.pending]),
                or_(
                    Conversation.last_message_at < cutoff,
                    Conversation.last_message_at.is_(None) & (Conversation.created_at < cutoff),
                ),
            )
            .limit(BATCH)
        )
    ).all()
    now = utcnow()
    for conversation in rows:
        conversation.status = ConversationStatus.resolved
        conversation.resolved_at = now
        conversation.resolved_by_id = None
        publish_conversation_updated(session, ctx, conversation)
    return len(rows)
