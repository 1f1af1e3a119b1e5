"""Merging two contacts who turn out to be one person, undoing a merge, and splitting an identity off.

A merge moves the source's identities, conversations, messages, timeline and
tags onto the target, fills the target's empty profile fields and missing
attributes from the source, and marks the source ``merged_into`` the target.
Everything it changed is written to a :class:`ContactMerge` row, which is what
:func:`undo_merge` puts back. Messages that arrive after the merge stay with
the target: they were received by the merged person.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from parley.exceptions import Conflict, NotFound, UnprocessableEntity
from parley.kit.types import utcnow
from parley.models import (
    Contact,
    ContactIdentity,
    ContactMerge,
    ContactTag,
    Conversation,
    ConversationStatus,
    Message,
    TimelineEvent,
)

_PROFILE_FIELDS = (
    "display_name",
    "avatar_url",
    "phone",
    "email",
    "language",
    "city",
    "province",
    "country",
    "birthday",
    "owner_id",
)
_LATEST = ("last_inbound_at", "last_outbound_at", "last_followed_at", "last_unfollowed_at")


def _plain(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _restore(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name == "owner_id":
        return uuid.UUID(value)
    if name == "birthday":
        from datetime import date

        return date.fromisoformat(value)
    if name.endswith("_at"):
        return datetime.fromisoformat(value)
    return value


async def merge_contacts(
    session: AsyncSession,
    *,
    source: Contact,
    target: Contact,
    reason: str,
    actor_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    """Moves everything of ``source`` onto ``target``; returns the record of what moved."""
    if source.id == target.id:
        return {}
    if source.merged_into_id is not None or target.merged_into_id is not None:
        raise Conflict("One of these contacts was already merged into another")
    identities = list(
        (
            await session.scalars(select(ContactIdentity.id).where(ContactIdentity.contact_id == source.id))
        ).all()
    )
    conversations = list(
        (await session.scalars(select(Conversation).where(Conversation.contact_id == source.id))).all()
    )
    resolved_by_merge: list[str] = []
    for conversation in conversations:
        if conversation.status != ConversationStatus.resolved:
            clash = await session.scalar(
                select(Conversation.id).where(
                    Conversation.contact_id == target.id,
                    Conversation.account_id == conversation.account_id,
                    Conversation.status != ConversationStatus.resolved,
                )
            )
            if clash:
                # Two live conversations on one account for one person: keep the target's.
                resolved_by_merge.append(f"{conversation.id}:{conversation.status}")
                conversation.status = ConversationStatus.resolved
                conversation.resolved_at = utcnow()
        conversation.contact_id = target.id
    messages = list((await session.scalars(select(Message.id).where(Message.contact_id == source.id))).all())
    events = list(
        (await session.scalars(select(TimelineEvent.id).where(TimelineEvent.contact_id == source.id))).all()
    )
    await session.execute(
        update(ContactIdentity).where(ContactIdentity.contact_id == source.id).values(contact_id=target.id)
    )
    await session.execute(update(Message).where(Message.contact_id == source.id).values(contact_id=target.id))
    await session.execute(
        update(TimelineEvent).where(TimelineEvent.contact_id == source.id).values(contact_id=target.id)
    )
    # Tags: the target gets the source's tags it lacks; the source keeps its own rows, so undo
    # only has to take back what was added.
    source_tags = {
        tag_id: (src, by)
        for tag_id, src, by in (
            await session.execute(
                select(ContactTag.tag_id, ContactTag.source, ContactTag.added_by_id).where(
                    ContactTag.contact_id == source.id
                )
            )
        ).all()
    }
    present = set(
        (await session.scalars(select(ContactTag.tag_id).where(ContactTag.contact_id == target.id))).all()
    )
    added_tags = [tag_id for tag_id in source_tags if tag_id not in present]
    if added_tags:
        await session.execute(
            insert(ContactTag),
            [
                {
                    "tag_id": t,
                    "contact_id": target.id,
                    "source": source_tags[t][0],
                    "added_by_id": source_tags[t][1],
                }
                for t in added_tags
            ],
        )
    filled: dict[str, Any] = {}
    for name in _PROFILE_FIELDS:
        if not getattr(target, name) and getattr(source, name):
            filled[name] = _plain(getattr(target, name))
            setattr(target, name, getattr(source, name))
    before_times = {name: _plain(getattr(target, name)) for name in (*_LATEST, "first_followed_at")}
    for name in _LATEST:
        values = [v for v in (getattr(target, name), getattr(source, name)) if v is not None]
        setattr(target, name, max(values) if values else None)
    firsts = [v for v in (target.first_followed_at, source.first_followed_at) if v is not None]
    target.first_followed_at = min(firsts) if firsts else None
    target.inbound_count += source.inbound_count
    target.outbound_count += source.outbound_count
    added_attributes = [k for k in source.attributes if k not in target.attributes and not k.startswith("_")]
    target.attributes = {**target.attributes, **{k: source.attributes[k] for k in added_attributes}}
    record: dict[str, Any] = {
        "identities": [str(i) for i in identities],
        "conversations": [str(c.id) for c in conversations],
        "resolved": resolved_by_merge,
        "messages": messages,
        "timeline": events,
        "tags": [str(t) for t in added_tags],
        "filled": filled,
        "times": before_times,
        "attributes": added_attributes,
        "counts": [source.inbound_count, source.outbound_count],
    }
    source.merged_into_id = target.id
    session.add(
        ContactMerge(
            source_id=source.id,
            target_id=target.id,
            reason=reason[:200],
            record=record,
            merged_by_id=actor_id,
        )
    )
    await session.flush()
    return record


async def undo_merge(
    session: AsyncSession, merge_id: uuid.UUID, *, actor_id: uuid.UUID | None = None
) -> ContactMerge:
    """Puts back what a merge moved: the source is its own contact again."""
    merge = await session.get(ContactMerge, merge_id)
    if merge is None:
        raise NotFound("No such merge")
    if merge.undone_at is not None:
        raise Conflict("This merge was undone already")
    source = await session.get(Contact, merge.source_id)
    target = await session.get(Contact, merge.target_id)
    if source is None or target is None:
        raise NotFound("A contact of this merge no longer exists")
    if target.merged_into_id is not None:
        raise Conflict("The merged contact was merged again since; undo that merge first")
    record = merge.record
    identity_ids = [uuid.UUID(i) for i in record.get("identities", [])]
    if identity_ids:
        await session.execute(
            update(ContactIdentity)
            .where(ContactIdentity.id.in_(identity_ids), ContactIdentity.contact_id == target.id)
            .values(contact_id=source.id)
        )
    conversation_ids = [uuid.UUID(c) for c in record.get("conversations", [])]
    if conversation_ids:
        await session.execute(
            update(Conversation)
            .where(Conversation.id.in_(conversation_ids), Conversation.contact_id == target.id)
            .values(contact_id=source.id)
            .execution_options(synchronize_session=False)
        )
    for entry in record.get("resolved", []):
        conversation_id, status = entry.split(":", 1)
        conversation = await session.get(Conversation, uuid.UUID(conversation_id))
        if conversation is not None and conversation.status == ConversationStatus.resolved:
            conversation.status, conversation.resolved_at = status, None
    if record.get("messages"):
        await session.execute(
            update(Message)
            .where(Message.id.in_(record["messages"]), Message.contact_id == target.id)
            .values(contact_id=source.id)
            .execution_options(synchronize_session=False)
        )
    if record.get("timeline"):
        await session.execute(
            update(TimelineEvent)
            .where(TimelineEvent.id.in_(record["timeline"]), TimelineEvent.contact_id == target.id)
            .values(contact_id=source.id)
            .execution_options(synchronize_session=False)
        )
    if record.get("tags"):
        await session.execute(
            delete(ContactTag).where(
                ContactTag.contact_id == target.id,
                ContactTag.tag_id.in_([uuid.UUID(t) for t in record["tags"]]),
            )
        )
    for name, before in record.get("filled", {}).items():
        # Only what the merge filled in and nobody has changed since.
        if _plain(getattr(target, name)) == _plain(getattr(source, name)):
            setattr(target, name, _restore(name, before))
    for name, before in record.get("times", {}).items():
        if _plain(getattr(target, name)) == _plain(getattr(source, name)):
            setattr(target, name, _restore(name, before))
    inbound, outbound = record.get("counts", [0, 0])
    target.inbound_count = max(0, target.inbound_count - inbound)
    target.outbound_count = max(0, target.outbound_count - outbound)
    attributes = dict(target.attributes)
    for key in record.get("attributes", []):
        if attributes.get(key) == source.attributes.get(key):
            attributes.pop(key, None)
    target.attributes = attributes
    source.merged_into_id = None
    merge.undone_at = utcnow()
    merge.undone_by_id = actor_id
    await session.flush()
    return merge


async def split_identity(session: AsyncSession, identity_id: uuid.UUID) -> Contact:
    """Moves one identity, with its conversations, messages and timeline, to a new contact."""
    identity = await session.get(ContactIdentity, identity_id)
    if identity is None:
        raise NotFound("No such identity")
    contact = await session.get(Contact, identity.contact_id)
    if contact is None:
        raise NotFound("No such contact")
    others = list(
        (
            await session.scalars(
                select(ContactIdentity).where(
                    ContactIdentity.contact_id == contact.id, ContactIdentity.id != identity.id
                )
            )
        ).all()
    )
    if not others:
        raise UnprocessableEntity("This is the contact's only identity: there is nothing to split it from")
    new = Contact(
        id=uuid.uuid4(),
        display_name=f"{contact.display_name} ({identity.value[-8:]})",
        attributes={},
        lifecycle_stage=contact.lifecycle_stage,
    )
    session.add(new)
    await session.flush()
    identity.contact_id = new.id
    if identity.account_id is not None and identity.scope:
        # What came in through this account from this identity belongs to the split-off person.
        await session.execute(
            update(Conversation)
            .where(Conversation.contact_id == contact.id, Conversation.account_id == identity.account_id)
            .values(contact_id=new.id)
            .execution_options(synchronize_session=False)
        )
        await session.execute(
            update(Message)
            .where(
                Message.contact_id == contact.id,
                Message.account_id == identity.account_id,
                Message.peer_id == identity.value,
            )
            .values(contact_id=new.id)
            .execution_options(synchronize_session=False)
        )
        await session.execute(
            update(TimelineEvent)
            .where(TimelineEvent.contact_id == contact.id, TimelineEvent.account_id == identity.account_id)
            .values(contact_id=new.id)
            .execution_options(synchronize_session=False)
        )
        await _recount(session, new)
        await _recount(session, contact)
    await session.flush()
    return new


async def _recount(session: AsyncSession, contact: Contact) -> None:
    from sqlalchemy import func

    for direction, count_name, last_name in (
        ("in", "inbound_count", "last_inbound_at"),
        ("out", "outbound_count", "last_outbound_at"),
    ):
        count, last = (
            await session.execute(
                select(func.count(), func.max(Message.created_at)).where(
                    Message.contact_id == contact.id,
                    Message.direction == direction,
                    Message.kind == "message",
                )
            )
        ).one()
        setattr(contact, count_name, int(count))
        setattr(contact, last_name, last)


async def merges_of(session: AsyncSession, contact_id: uuid.UUID) -> list[ContactMerge]:
    return list(
        (
            await session.scalars(
                select(ContactMerge)
                .where((ContactMerge.target_id == contact_id) | (ContactMerge.source_id == contact_id))
                .order_by(ContactMerge.created_at.desc())
            )
        ).all()
    )


async def live_contact_id(session: AsyncSession, contact_id: uuid.UUID) -> uuid.UUID:
    """Follows merges to the contact that stands for this person now."""
    seen = {contact_id}
    current = contact_id
    while True:
        merged_into = await session.scalar(select(Contact.merged_into_id).where(Contact.id == current))
        if merged_into is None or merged_into in seen:
            return current
        seen.add(merged_into)
        current = merged_into
