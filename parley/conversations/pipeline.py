"""The inbound pipeline: each stored platform event becomes contact, conversation and message rows.

It runs in the webhook's own transaction, right after the event is stored, so
an agent sees the message as soon as the platform gets its answer; a failure
leaves the event pending for the sweeper instead of losing it (DESIGN.md).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.channels.base import InboundEvent, InboundKind
from parley.contacts.identity import resolve_contact
from parley.contacts.lifecycle import refresh_stage
from parley.context import Context
from parley.delivery.service import apply_status
from parley.kit.types import utcnow
from parley.models import (
    ChannelAccount,
    Contact,
    Conversation,
    ConversationStatus,
    Direction,
    Message,
    MessageStatus,
    TimelineEvent,
)
from parley.models import InboundEvent as InboundEventRow
from parley.realtime.service import publish_on_commit

log = structlog.get_logger()

AUDIENCE = {"permission": "conversations.read"}

# A customer writing again within this time reopens their last conversation;
# later, a new conversation starts (and is counted as a new contact for reports).
REOPEN_WINDOW = timedelta(days=7)


@dataclass
class Outcome:
    """What processing produced, for realtime events and the caller's reply logic."""

    events: list[dict[str, Any]] = field(default_factory=list)
    message: Message | None = None
    conversation: Conversation | None = None
    contact: Contact | None = None
    # The normalized event, parsed once here for automation and routing after the pipeline.
    event: InboundEvent | None = None


def preview(event: InboundEvent) -> str:
    if event.text:
        return event.text[:200]
    if event.recognition:
        return event.recognition[:200]
    if event.location:
        return (event.location.name or event.location.address or f"[{event.type}]")[:200]
    if event.link:
        return (event.link.title or event.link.url)[:200]
    if event.media and event.media.caption:
        return event.media.caption[:200]
    return f"[{event.type}]"


# Built once: SQLAlchemy memoizes a statement's cache key on the object (see contacts/identity.py).
_ACTIVE_CONVERSATION = select(Conversation).where(
    Conversation.contact_id == bindparam("contact_id"),
    Conversation.account_id == bindparam("account_id"),
    Conversation.status != ConversationStatus.resolved,
)
_LATEST_CONVERSATION = (
    select(Conversation)
    .where(
        Conversation.contact_id == bindparam("contact_id"), Conversation.account_id == bindparam("account_id")
    )
    .order_by(Conversation.resolved_at.desc())
    .limit(1)
)


async def _conversation(
    session: AsyncSession,
    *,
    contact: Contact,
    account: ChannelAccount,
    now: datetime,
    new_contact: bool = False,
) -> tuple[Conversation, bool]:
    """The contact's active conversation on the account, reopened or started as needed.

    ``new_contact``: the contact was created in this transaction, so it has no conversations to find.
    """
    if not new_contact:
        ids = {"contact_id": contact.id, "account_id": account.id}
        active = await session.scalar(_ACTIVE_CONVERSATION, ids)
        if active is not None:
            if active.status in (ConversationStatus.snoozed, ConversationStatus.pending):
                active.status = ConversationStatus.open
                active.snoozed_until = None
            return active, False
        latest = await session.scalar(_LATEST_CONVERSATION, ids)
        if latest is not None and latest.resolved_at is not None and latest.resolved_at > now - REOPEN_WINDOW:
            latest.status = ConversationStatus.open
            latest.resolved_at = None
            return latest, True
    conversation = Conversation(
        id=uuid.uuid4(), contact_id=contact.id, account_id=account.id, status=ConversationStatus.open
    )
    session.add(conversation)
    await session.flush()
    return conversation, True


def conversation_summary(conversation: Conversation, contact: Contact | None = None) -> dict[str, Any]:
    return {
        "id": str(conversation.id),
        "account_id": str(conversation.account_id),
        "contact_id": str(conversation.contact_id),
        "contact_name": contact.display_name if contact else None,
        "status": conversation.status,
        "assignee_id": str(conversation.assignee_id) if conversation.assignee_id else None,
        "team_id": str(conversation.team_id) if conversation.team_id else None,
        "priority": conversation.priority,
        "unread_count": conversation.unread_count,
        "last_message_at": conversation.last_message_at,
        "last_inbound_at": conversation.last_inbound_at,
        "last_message_preview": conversation.last_message_preview,
    }


def message_summary(message: Message) -> dict[str, Any]:
    return {
        "id": message.id,
        "conversation_id": str(message.conversation_id) if message.conversation_id else None,
        "direction": message.direction,
        "kind": message.kind,
        "type": message.type,
        "text": message.text,
        "content": message.content,
        "status": message.status,
        "author_id": str(message.author_id) if message.author_id else None,
        "created_at": message.created_at,
        "error_reason": message.error_reason,
    }


async def _apply_status(
    session: AsyncSession, account: ChannelAccount, event: InboundEvent, outcome: Outcome
) -> None:
    status = event.status
    if status is None:
        return
    message = await apply_status(
        session,
        account_id=account.id,
        platform_message_id=status.message_id,
        status=status.status,
        at=event.occurred_at,
        error_code=status.error_code,
        error_reason=(status.error_title or status.error_detail or "failed")
        if status.status == "failed"
        else None,
    )
    if message is None:
        log.info("status.unknown_message", platform_message_id=status.message_id)
        return
    outcome.events.append(
        {
            "type": "message.status",
            "message_id": message.id,
            "conversation_id": str(message.conversation_id) if message.conversation_id else None,
            "status": message.status,
            "error_reason": message.error_reason,
            "audience": AUDIENCE,
        }
    )


def publish_conversation_updated(
    session: AsyncSession, ctx: Context, conversation: Conversation, contact: Contact | None = None
) -> None:
    """Tells every console that a conversation changed (status, assignee, contact), after commit."""
    publish_on_commit(
        session,
        ctx,
        {
            "type": "conversation.updated",
            "conversation": conversation_summary(conversation, contact),
            "audience": AUDIENCE,
        },
    )


async def _apply_contact_event(
    session: AsyncSession,
    account: ChannelAccount,
    row: InboundEventRow,
    event: InboundEvent,
    contact: Contact,
) -> None:
    data: dict[str, Any] = dict(event.data)
    if event.location:
        data["location"] = event.location.model_dump(exclude_none=True)
    if event.type == "subscribe":
        if contact.first_followed_at is None:
            contact.first_followed_at = event.occurred_at
        contact.last_followed_at = event.occurred_at
    elif event.type == "unsubscribe":
        contact.last_unfollowed_at = event.occurred_at
    session.add(
        TimelineEvent(
            contact_id=contact.id,
            account_id=account.id,
            type=event.type,
            data=data,
            occurred_at=event.occurred_at,
            inbound_event_id=row.id,
        )
    )


async def process(session: AsyncSession, *, account: ChannelAccount, row: InboundEventRow) -> Outcome:
    """Turns one stored inbound event into CRM rows; idempotent on the row's status."""
    outcome = Outcome()
    if row.status == "processed":
        return outcome
    event = outcome.event = InboundEvent.model_validate(row.normalized)
    now = utcnow()
    if event.kind == InboundKind.status:
        await _apply_status(session, account, event, outcome)
    elif event.data.get("scope") == "account":
        # About the business account itself (template approved, quality change): no customer involved.
        log.info("inbound.account_event", type=event.type, account_id=str(account.id))
    else:
        contact, created = await resolve_contact(session, account=account, sender=event.sender)
        outcome.contact = contact
        if event.kind == InboundKind.message:
            conversation, opened = await _conversation(
                session, contact=contact, account=account, now=now, new_contact=created
            )
            message = Message(
                account_id=account.id,
                conversation_id=conversation.id,
                contact_id=contact.id,
                direction=Direction.inbound,
                kind="message",
                type=event.type,
                peer_id=event.sender.id,
                text=event.text or event.recognition,
                content=row.normalized,
                status=MessageStatus.received,
                priority=0,
                idempotency_key=f"in:{row.id}",
                platform_message_id=event.platform_message_id,
                inbound_event_id=row.id,
                created_at=event.occurred_at,
            )
            session.add(message)
            conversation.last_inbound_at = event.occurred_at
            conversation.last_message_at = event.occurred_at
            conversation.last_message_preview = preview(event)
            conversation.unread_count += 1
            contact.last_inbound_at = event.occurred_at
            contact.inbound_count += 1
            await session.flush()
            outcome.message, outcome.conversation = message, conversation
            summary = conversation_summary(conversation, contact)
            if opened:
                outcome.events.append(
                    {
                        "type": "conversation.opened",
                        "conversation": summary,
                        "audience": {"permission": "conversations.read"},
                    }
                )
            outcome.events.append(
                {
                    "type": "message.created",
                    "message": message_summary(message),
                    "conversation": summary,
                    "audience": {"permission": "conversations.read"},
                }
            )
        else:
            await _apply_contact_event(session, account, row, event, contact)
            outcome.events.append(
                {
                    "type": "contact.timeline",
                    "contact_id": str(contact.id),
                    "event_type": event.type,
                    "audience": {"permission": "contacts.read"},
                }
            )
        if created:
            outcome.events.append(
                {
                    "type": "contact.created",
                    "contact_id": str(contact.id),
                    "audience": {"permission": "contacts.read"},
                }
            )
    if outcome.contact is not None:
        # Stage rules react to the event at once; the periodic job covers the passing of time.
        await refresh_stage(session, outcome.contact)
    row.status = "processed"
    row.processed_at = now
    row.error = None
    return outcome
