"""The inbound pipeline for a batch of customer messages at once, in a fixed number of statements.

The group committer (``parley.conversations.intake``) used to run the pipeline
(``parley.conversations.pipeline``) once per event: seven statements for a
known customer's message, each paying SQLAlchemy's per-statement cost, plus a
savepoint per step. Here a batch of webhooks that carry only customer messages
is stored with one INSERT, its senders are looked up with one SELECT per
account, and its contacts, identities, conversations, messages and counters are
written with one executemany each; automation and routing then run for each
message in arrival order, as before.

What makes this equal to the per-event pipeline:

* a batch holds at most one message per sender and per contact (the intake
  cuts batches at a repeated sender; a contact reached by two senders raises
  :class:`NotBatchable`), so no message of a batch depends on another's
  pipeline, automation or routing, and the facts looked up with the contact
  (a flow waiting for a reply, a conversation waiting in a queue) are current;
* anything the set-wise path does not handle (an identity whose contact was
  merged or deleted, a new customer created concurrently by another node)
  raises :class:`NotBatchable`;
* the batch runs in one savepoint: when it raises anything, the intake rolls it
  back and runs the same webhooks through the per-event path, where each
  webhook, event, automation and routing step is isolated as before.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.ext.asyncio import AsyncSession

from parley.automation.inbound import react as automation_react
from parley.automation.outbound import NO_PASSIVE, Responder
from parley.channels.base import InboundEvent, InboundKind
from parley.channels.ingest import NewEvent, Stored, store_payloads
from parley.contacts.identity import (
    IDENTITY_BATCH_INSERTS,
    Key,
    identity_keys,
    identity_values,
    new_contact_values,
    normalise_phone,
)
from parley.contacts.lifecycle import compute_stage, current_rules
from parley.context import Context
from parley.conversations.pipeline import (
    _CONTACT_INBOUND,
    _CONVERSATION_INBOUND,
    _EVENTS,
    BATCH_LOOKUP,
    Outcome,
    _find_conversation,
    _Found,
    _lookup_decoder,
    announce_contact,
    announce_message,
    message_values,
    preview,
)
from parley.kit.rows import insert_rows, set_committed
from parley.kit.types import utcnow
from parley.models import ChannelAccount, Contact, Conversation, ConversationStatus, Message
from parley.realtime.service import publish_on_commit
from parley.routing.service import route_inbound


class NotBatchable(Exception):
    """The batch needs the per-event path; it is rolled back and processed that way."""


@dataclass(frozen=True)
class Payload:
    """One webhook's verified events, as the intake hands them over."""

    account: ChannelAccount
    events: list[InboundEvent]
    raw: str
    responder: Responder | None


@dataclass(frozen=True)
class _StoredRef:
    """The stored event, as automation and routing refer to it (by id)."""

    id: int


def batchable(events: Sequence[InboundEvent]) -> bool:
    """Whether a webhook's events can go through this path: customer messages, one per sender."""
    return (
        bool(events)
        and all(e.kind is InboundKind.message and e.data.get("scope") != "account" for e in events)
        and len({e.sender.id for e in events}) == len(events)
    )


def senders(account_id: uuid.UUID, events: Sequence[InboundEvent]) -> set[tuple[uuid.UUID, str]]:
    return {(account_id, e.sender.id) for e in events}


_EVENTS_DONE = update(_EVENTS).where(_EVENTS.c.id.in_(bindparam("ids", expanding=True)))


async def _look_up(
    session: AsyncSession, wanted: Mapping[tuple[uuid.UUID, str, str], set[str]]
) -> dict[tuple[uuid.UUID, str, str, str], _Found]:
    """Every wanted identity with its contact and the contact's active conversation on the account."""
    decode = _lookup_decoder(session)
    found: dict[tuple[uuid.UUID, str, str, str], _Found] = {}
    for (account_id, kind, scope), values in wanted.items():
        params = {"account_id": account_id, "kind": kind, "scope": scope, "values": sorted(values)}
        for row in (await session.execute(BATCH_LOOKUP, params)).all():
            key = (account_id, kind, scope, row[0])
            if key not in found:
                found[key] = decode(row[1:])
    return found


@dataclass
class _Item:
    new: NewEvent
    keys: list[Key]
    contact: Contact | None = None
    contact_row: dict[str, Any] | None = None
    found: _Found | None = None
    conversation: Conversation | None = None
    conversation_row: dict[str, Any] | None = None
    opened: bool = False
    changes: dict[str, Any] | None = None


def _message_row(item: _Item) -> dict[str, Any]:
    assert item.conversation is not None  # noqa: S101  (every item has its conversation by now)
    assert item.contact is not None  # noqa: S101
    new = item.new
    return message_values(new.account, new.id, new.normalized, new.event, item.conversation, item.contact)


async def process_batch(
    session: AsyncSession, ctx: Context, payloads: Sequence[Payload], outcomes: list[Outcome] | None = None
) -> list[Stored]:
    """Stores and processes the payloads' messages; raises when the batch must go the per-event way.

    ``outcomes``, when given, receives each new message's :class:`Outcome` in arrival order.
    """
    stored, new = await store_payloads(session, [(p.account, p.events, p.raw) for p in payloads])
    if not new:
        return stored
    now = utcnow()
    items = [_Item(n, identity_keys(n.account, n.event.sender)) for n in new]
    wanted: dict[tuple[uuid.UUID, str, str], set[str]] = {}
    for item in items:
        for key in item.keys:
            wanted.setdefault((item.new.account.id, key.kind, key.scope), set()).add(key.value)
    found = await _look_up(session, wanted)

    # Contacts: found by their first known identity, or new; identities they lack are added.
    identities: list[dict[str, Any]] = []
    first_keys: set[tuple[str, str, str]] = set()
    claimed: dict[tuple[str, str, str], uuid.UUID] = {}
    contacts_seen: set[uuid.UUID] = set()
    for item in items:
        account, sender = item.new.account, item.new.event.sender
        for key in item.keys:
            hit = found.get((account.id, key.kind, key.scope, key.value))
            if hit is None:
                continue
            if hit.contact is None or hit.contact.merged_into_id is not None:
                raise NotBatchable("an identity of a merged or deleted contact")
            item.contact, item.found = hit.contact, hit
            break
        if item.contact is None:
            item.contact_row = new_contact_values(account, sender)
            contact_id = item.contact_row["id"]
            first_keys.add((item.keys[0].kind, item.keys[0].scope, item.keys[0].value))
        else:
            contact_id = item.contact.id
            if sender.display_name and not item.contact.display_name:
                item.contact.display_name = sender.display_name
            if sender.phone and not item.contact.phone:
                item.contact.phone = normalise_phone(sender.phone)
        if contact_id in contacts_seen:
            raise NotBatchable("one contact twice in a batch")
        contacts_seen.add(contact_id)
        for key in item.keys:
            if (account.id, key.kind, key.scope, key.value) in found:
                continue
            triple = (key.kind, key.scope, key.value)
            if claimed.setdefault(triple, contact_id) != contact_id:
                raise NotBatchable("two senders of a batch share an identity")
            identities.append(identity_values(contact_id, account, key))
    created = await insert_rows(session, Contact, [i.contact_row for i in items if i.contact_row is not None])
    by_id = {c.id: c for c in created}
    for item in items:
        if item.contact_row is not None:
            item.contact = by_id[item.contact_row["id"]]
    if identities:
        result = await session.execute(IDENTITY_BATCH_INSERTS[session.get_bind().dialect.name], identities)
        added = {(kind, scope, value) for _id, kind, scope, value in result.all()}
        if not first_keys <= added:
            # Another node created one of these customers meanwhile: the per-event path adopts its contact.
            raise NotBatchable("a new customer's identity was taken concurrently")

    # Conversations: the active one on the account, a recently resolved one reopened, or a new one.
    new_conversations: list[dict[str, Any]] = []
    for item in items:
        account, contact = item.new.account, item.contact
        assert contact is not None  # noqa: S101  (set for every item above)
        if item.found is not None and item.found.conversation is not None:
            item.conversation = item.found.conversation
            if item.conversation.status in (ConversationStatus.snoozed, ConversationStatus.pending):
                item.changes = {"status": ConversationStatus.open, "snoozed_until": None}
        elif item.contact_row is None:
            item.conversation, item.opened, item.changes = await _find_conversation(
                session, contact=contact, account=account, now=now
            )
        else:
            item.opened = True
        if item.conversation is None:
            at = item.new.event.occurred_at
            item.opened = True
            item.conversation_row = {
                "id": uuid.uuid4(),
                "contact_id": contact.id,
                "account_id": account.id,
                "status": ConversationStatus.open,
                "last_inbound_at": at,
                "last_message_at": at,
                "last_message_preview": preview(item.new.event),
                "unread_count": 1,
            }
            new_conversations.append(item.conversation_row)
    opened_rows = {c.id: c for c in await insert_rows(session, Conversation, new_conversations)}
    updates: dict[frozenset[str], list[dict[str, Any]]] = {}
    for item in items:
        if item.conversation_row is not None:
            item.conversation = opened_rows[item.conversation_row["id"]]
            continue
        conversation = item.conversation
        assert conversation is not None  # noqa: S101
        at = item.new.event.occurred_at
        changes = {
            **(item.changes or {}),
            "last_inbound_at": at,
            "last_message_at": at,
            "last_message_preview": preview(item.new.event),
            "updated_at": now,
        }
        updates.setdefault(frozenset(changes), []).append({"_id": conversation.id, **changes})
        set_committed(conversation, {**changes, "unread_count": conversation.unread_count + 1})
    for rows in updates.values():
        await session.execute(_CONVERSATION_INBOUND, rows)

    # Messages, then the contacts' counters and stages, then the events marked processed.
    messages = await insert_rows(
        session, Message, [_message_row(i) for i in items], matched_by="idempotency_key"
    )
    rules = await current_rules(session)
    contact_rows = []
    for item in items:
        contact = item.contact
        assert contact is not None  # noqa: S101
        at = item.new.event.occurred_at
        set_committed(contact, {"last_inbound_at": at})
        changes = {
            "last_inbound_at": at,
            "lifecycle_stage": compute_stage(contact, rules, now),
            "updated_at": now,
        }
        contact_rows.append({"_id": contact.id, **changes})
        set_committed(contact, {**changes, "inbound_count": contact.inbound_count + 1})
    await session.execute(_CONTACT_INBOUND, contact_rows)
    await session.execute(
        _EVENTS_DONE,
        {"ids": [i.new.id for i in items], "status": "processed", "processed_at": now, "error": None},
    )

    # The bot answers first; what it did not answer goes to routing. In arrival order, one by one.
    for item, message in zip(items, messages, strict=True):
        contact, conversation = item.contact, item.conversation
        assert contact is not None  # noqa: S101
        assert conversation is not None  # noqa: S101
        outcome = Outcome(
            contact=contact,
            event=item.new.event,
            new_contact=item.contact_row is not None,
            new_conversation=item.conversation_row is not None,
            flow_waiting=False if item.found is None else item.found.flow_waiting,
            queued=False
            if item.conversation_row is not None
            else (
                item.found.queued if item.found is not None and item.found.conversation is not None else None
            ),
        )
        announce_message(outcome, message, conversation, contact, opened=item.opened)
        if item.contact_row is not None:
            announce_contact(outcome, contact)
        account = item.new.account
        responder = payloads[item.new.payload].responder or NO_PASSIVE
        ref: Any = _StoredRef(item.new.id)
        if not await automation_react(
            session, ctx, account=account, row=ref, outcome=outcome, responder=responder
        ):
            await route_inbound(session, ctx, account=account, event=item.new.event, outcome=outcome)
        for event in outcome.events:
            publish_on_commit(session, ctx, event)
        if outcomes is not None:
            outcomes.append(outcome)
    return stored
