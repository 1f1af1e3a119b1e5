"""The inbound pipeline: each stored platform event becomes contact, conversation and message rows.

It runs in the webhook's own transaction, right after the event is stored, so
an agent sees the message as soon as the platform gets its answer; a failure
leaves the event pending for the sweeper instead of losing it (DESIGN.md).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple, cast

import structlog
from sqlalchemy import Table, and_, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from parley.automation.flows.engine import Status as RunStatus
from parley.channels.base import InboundEvent, InboundKind
from parley.contacts.identity import resolve_contact, resolve_contact_row
from parley.contacts.lifecycle import compute_stage, current_rules, refresh_stage
from parley.context import Context
from parley.delivery.service import apply_status
from parley.kit.rows import attach, columns_of, insert_row, set_committed
from parley.kit.types import utcnow
from parley.models import (
    ChannelAccount,
    Contact,
    ContactIdentity,
    Conversation,
    ConversationStatus,
    Direction,
    EntryStatus,
    FlowRun,
    Message,
    MessageStatus,
    QueueEntry,
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
    # Created by this event: automation and routing skip lookups whose answer is then known
    # (a new contact has no waiting flow; a new conversation waits in no queue).
    new_contact: bool = False
    new_conversation: bool = False
    # Looked up with the contact when it could be (None: not known, ask the database).
    flow_waiting: bool | None = None
    queued: bool | None = None


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


_CONTACTS = cast(Table, Contact.__table__)
_CONVERSATIONS = cast(Table, Conversation.__table__)
_IDENTITIES = cast(Table, ContactIdentity.__table__)
_RUNS = cast(Table, FlowRun.__table__)
_ENTRIES = cast(Table, QueueEntry.__table__)
_EVENTS = cast(Table, InboundEventRow.__table__)
_CONTACT_COLUMNS = columns_of(Contact)
_CONVERSATION_COLUMNS = columns_of(Conversation)


# A known customer's message, in one statement: the identity, its contact, the contact's active
# conversation on the account, and two facts automation and routing would otherwise each look up
# (a flow waiting for this contact's reply; the conversation waiting in a queue). Plain columns,
# not ORM entities: the objects are attached by hand (parley/kit/rows.py) for a fraction of the
# ORM's row-loading cost.
def _message_lookup(*identity: Any, leading: tuple[Any, ...] = ()) -> Any:
    return (
        select(
            *leading,
            _IDENTITIES.c.contact_id,
            *_CONTACT_COLUMNS,
            *_CONVERSATION_COLUMNS,
            select(_RUNS.c.id)
            .where(
                _RUNS.c.contact_id == _CONTACTS.c.id,
                _RUNS.c.account_id == bindparam("account_id"),
                _RUNS.c.status == RunStatus.waiting_reply,
                _RUNS.c.dry_run.is_(False),
            )
            .exists(),
            select(_ENTRIES.c.id)
            .where(
                _ENTRIES.c.conversation_id == _CONVERSATIONS.c.id, _ENTRIES.c.status == EntryStatus.waiting
            )
            .exists(),
        )
        .select_from(
            _IDENTITIES.outerjoin(_CONTACTS, _CONTACTS.c.id == _IDENTITIES.c.contact_id).outerjoin(
                _CONVERSATIONS,
                and_(
                    _CONVERSATIONS.c.contact_id == _CONTACTS.c.id,
                    _CONVERSATIONS.c.account_id == bindparam("account_id"),
                    _CONVERSATIONS.c.status != ConversationStatus.resolved,
                ),
            )
        )
        .where(_IDENTITIES.c.kind == bindparam("kind"), _IDENTITIES.c.scope == bindparam("scope"), *identity)
    )


_MESSAGE_LOOKUP = _message_lookup(_IDENTITIES.c.value == bindparam("value"))
# The same for many senders at once (parley/conversations/batch.py): the identity's value comes
# first, so each row can be told apart, and the rest decodes as above.
BATCH_LOOKUP = _message_lookup(
    _IDENTITIES.c.value.in_(bindparam("values", expanding=True)), leading=(_IDENTITIES.c.value,)
)
_CONTACT_PART = slice(1, 1 + len(_CONTACT_COLUMNS))
_CONVERSATION_PART = slice(_CONTACT_PART.stop, _CONTACT_PART.stop + len(_CONVERSATION_COLUMNS))
_CONTACT_ID = [c.key for c in _CONTACT_COLUMNS].index("id")
_CONVERSATION_ID = [c.key for c in _CONVERSATION_COLUMNS].index("id")


class _Found(NamedTuple):
    """A known customer's lookup row, decoded (the first two as ``resolve_contact_row`` reads them)."""

    contact_id: uuid.UUID
    contact: Contact | None
    conversation: Conversation | None  # the active one on this account
    flow_waiting: bool
    queued: bool


def _lookup_decoder(session: AsyncSession) -> Any:
    """Turns a lookup row into a :class:`_Found`."""

    def decode(row: Any) -> _Found:
        contact_part, conversation_part = row[_CONTACT_PART], row[_CONVERSATION_PART]
        contact = attach(session, Contact, contact_part) if contact_part[_CONTACT_ID] is not None else None
        conversation = (
            attach(session, Conversation, conversation_part)
            if conversation_part[_CONVERSATION_ID] is not None
            else None
        )
        return _Found(row[0], contact, conversation, bool(row[-2]), bool(row[-1]))

    return decode


# The counters grow in SQL; the other columns come in as parameters (only those given are SET).
_CONVERSATION_INBOUND = (
    update(_CONVERSATIONS)
    .where(_CONVERSATIONS.c.id == bindparam("_id"))
    .values(unread_count=_CONVERSATIONS.c.unread_count + 1)
)
_CONVERSATION_SET = update(_CONVERSATIONS).where(_CONVERSATIONS.c.id == bindparam("_id"))
_CONTACT_INBOUND = (
    update(_CONTACTS)
    .where(_CONTACTS.c.id == bindparam("_id"))
    .values(inbound_count=_CONTACTS.c.inbound_count + 1)
)
_EVENT_DONE = update(_EVENTS).where(_EVENTS.c.id == bindparam("_id"))


async def _find_conversation(
    session: AsyncSession, *, contact: Contact, account: ChannelAccount, now: datetime
) -> tuple[Conversation | None, bool, dict[str, Any]]:
    """The conversation to continue, whether it counts as (re)opened, and the status change it needs.

    None when a new one must start. The change is left to the caller's UPDATE.
    """
    ids = {"contact_id": contact.id, "account_id": account.id}
    active = await session.scalar(_ACTIVE_CONVERSATION, ids)
    if active is not None:
        if active.status in (ConversationStatus.snoozed, ConversationStatus.pending):
            return active, False, {"status": ConversationStatus.open, "snoozed_until": None}
        return active, False, {}
    latest = await session.scalar(_LATEST_CONVERSATION, ids)
    if latest is not None and latest.resolved_at is not None and latest.resolved_at > now - REOPEN_WINDOW:
        return latest, True, {"status": ConversationStatus.open, "resolved_at": None}
    return None, True, {}


async def _new_conversation(
    session: AsyncSession, *, contact: Contact, account: ChannelAccount, values: dict[str, Any] | None = None
) -> Conversation:
    return await insert_row(
        session,
        Conversation,
        {
            "id": uuid.uuid4(),
            "contact_id": contact.id,
            "account_id": account.id,
            "status": ConversationStatus.open,
            **(values or {}),
        },
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
        found, opened, changes = await _find_conversation(session, contact=contact, account=account, now=now)
        if found is not None:
            if changes:
                changes["updated_at"] = now
                await session.execute(_CONVERSATION_SET, {"_id": found.id, **changes})
                set_committed(found, changes)
            return found, opened
    return await _new_conversation(session, contact=contact, account=account), True


async def _message(
    session: AsyncSession,
    *,
    account: ChannelAccount,
    row: InboundEventRow,
    event: InboundEvent,
    contact: Contact,
    created: bool,
    found: _Found | None,
    now: datetime,
    outcome: Outcome,
) -> None:
    """An inbound message: its conversation (found, reopened or new), the message, the counters.

    One statement per row written: Core UPDATEs with the counters grown in SQL, the
    session's objects kept in step (parley/kit/rows.py), no unit-of-work flush.
    """
    at = event.occurred_at
    activity = {"last_inbound_at": at, "last_message_at": at, "last_message_preview": preview(event)}
    conversation: Conversation | None = None
    opened, changes = True, dict[str, Any]()
    if found is not None and found.conversation is not None:
        conversation, opened = found.conversation, False
        if conversation.status in (ConversationStatus.snoozed, ConversationStatus.pending):
            changes = {"status": ConversationStatus.open, "snoozed_until": None}
    elif not created:
        conversation, opened, changes = await _find_conversation(
            session, contact=contact, account=account, now=now
        )
    if conversation is None:
        conversation = await _new_conversation(
            session, contact=contact, account=account, values={**activity, "unread_count": 1}
        )
        outcome.new_conversation = True
    else:
        changes = {**changes, **activity, "updated_at": now}
        await session.execute(_CONVERSATION_INBOUND, {"_id": conversation.id, **changes})
        set_committed(conversation, {**changes, "unread_count": conversation.unread_count + 1})
    message = await insert_row(
        session, Message, message_values(account, row.id, row.normalized, event, conversation, contact)
    )
    # The stage follows from the new timestamp (the periodic job covers the passing of time).
    set_committed(contact, {"last_inbound_at": at})
    contact_changes = {
        "last_inbound_at": at,
        "lifecycle_stage": compute_stage(contact, await current_rules(session), now),
        "updated_at": now,
    }
    await session.execute(_CONTACT_INBOUND, {"_id": contact.id, **contact_changes})
    set_committed(contact, {**contact_changes, "inbound_count": contact.inbound_count + 1})
    announce_message(outcome, message, conversation, contact, opened=opened)


def announce_message(
    outcome: Outcome, message: Message, conversation: Conversation, contact: Contact, *, opened: bool
) -> None:
    """Records the message and its conversation in the outcome, with the realtime events they make."""
    outcome.message, outcome.conversation = message, conversation
    summary = conversation_summary(conversation, contact)
    if opened:
        outcome.events.append({"type": "conversation.opened", "conversation": summary, "audience": AUDIENCE})
    outcome.events.append(
        {
            "type": "message.created",
            "message": message_summary(message),
            "conversation": summary,
            "audience": AUDIENCE,
        }
    )


def message_values(
    account: ChannelAccount,
    event_id: int,
    normalized: dict[str, Any],
    event: InboundEvent,
    conversation: Conversation,
    contact: Contact,
) -> dict[str, Any]:
    """The row of the message an inbound event (stored under ``event_id``) becomes."""
    return {
        "account_id": account.id,
        "conversation_id": conversation.id,
        "contact_id": contact.id,
        "direction": Direction.inbound,
        "kind": "message",
        "type": event.type,
        "peer_id": event.sender.id,
        "text": event.text or event.recognition,
        "content": normalized,
        "status": MessageStatus.received,
        "priority": 0,
        "idempotency_key": f"in:{event_id}",
        "platform_message_id": event.platform_message_id,
        "inbound_event_id": event_id,
        "created_at": event.occurred_at,
    }


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
    # Called inside a savepoint (parley.db.savepoint) that, if this fails, undoes the rows and
    # drops or expires the objects kept in step with them by hand.
    await _process(session, account, row, event, now, outcome)
    done = {"status": "processed", "processed_at": now, "error": None}
    await session.execute(_EVENT_DONE, {"_id": row.id, **done})
    set_committed(row, done)
    return outcome


async def _process(
    session: AsyncSession,
    account: ChannelAccount,
    row: InboundEventRow,
    event: InboundEvent,
    now: datetime,
    outcome: Outcome,
) -> None:
    if event.kind == InboundKind.status:
        await _apply_status(session, account, event, outcome)
        return
    if event.data.get("scope") == "account":
        # About the business account itself (template approved, quality change): no customer involved.
        log.info("inbound.account_event", type=event.type, account_id=str(account.id))
        return
    if event.kind == InboundKind.message:
        contact, created, found = await resolve_contact_row(
            session,
            account=account,
            sender=event.sender,
            lookup=_MESSAGE_LOOKUP,
            params={"account_id": account.id},
            decode=_lookup_decoder(session),
        )
        outcome.contact, outcome.new_contact = contact, created
        if created:
            outcome.flow_waiting = False
        elif found is not None:
            outcome.flow_waiting = found.flow_waiting
        await _message(
            session,
            account=account,
            row=row,
            event=event,
            contact=contact,
            created=created,
            found=found,
            now=now,
            outcome=outcome,
        )
        if outcome.new_conversation:
            outcome.queued = False
        elif found is not None and found.conversation is not None:
            outcome.queued = found.queued
    else:
        contact, created = await resolve_contact(session, account=account, sender=event.sender)
        outcome.contact, outcome.new_contact = contact, created
        await _apply_contact_event(session, account, row, event, contact)
        outcome.events.append(
            {
                "type": "contact.timeline",
                "contact_id": str(contact.id),
                "event_type": event.type,
                "audience": {"permission": "contacts.read"},
            }
        )
        # Stage rules react to the event at once; the periodic job covers the passing of time.
        await refresh_stage(session, contact)
    if created:
        announce_contact(outcome, contact)


def announce_contact(outcome: Outcome, contact: Contact) -> None:
    outcome.events.append(
        {
            "type": "contact.created",
            "contact_id": str(contact.id),
            "audience": {"permission": "contacts.read"},
        }
    )
