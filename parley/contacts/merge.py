"""Merging two contacts who turn out to be one person."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from parley.kit.types import utcnow
from parley.models import Contact, ContactIdentity, Conversation, ConversationStatus, Message, TimelineEvent

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
)


async def merge_contacts(
    session: AsyncSession, *, source: Contact, target: Contact, reason: str
) -> dict[str, Any]:
    """Moves everything of ``source`` onto ``target`` and marks ``source`` as merged into it.

    What moved is returned (and recorded on the source's attributes) so that the
    merge can be reviewed and undone later.
    """
    if source.id == target.id:
        return {}
    moved_identities = list(
        (
            await session.scalars(select(ContactIdentity.id).where(ContactIdentity.contact_id == source.id))
        ).all()
    )
    moved_conversations = list(
        (await session.scalars(select(Conversation).where(Conversation.contact_id == source.id))).all()
    )
    for conversation in moved_conversations:
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
                conversation.status = ConversationStatus.resolved
                conversation.resolved_at = utcnow()
        conversation.contact_id = target.id
    await session.execute(
        update(ContactIdentity).where(ContactIdentity.contact_id == source.id).values(contact_id=target.id)
    )
    await session.execute(update(Message).where(Message.contact_id == source.id).values(contact_id=target.id))
    await session.execute(
        update(TimelineEvent).where(TimelineEvent.contact_id == source.id).values(contact_id=target.id)
    )
    for name in _PROFILE_FIELDS:
        if not getattr(target, name) and getattr(source, name):
            setattr(target, name, getattr(source, name))
    target.inbound_count += source.inbound_count
    target.outbound_count += source.outbound_count
    for name in ("last_inbound_at", "last_outbound_at", "last_followed_at", "last_unfollowed_at"):
        values = [v for v in (getattr(target, name), getattr(source, name)) if v is not None]
        setattr(target, name, max(values) if values else None)
    firsts = [v for v in (target.first_followed_at, source.first_followed_at) if v is not None]
    target.first_followed_at = min(firsts) if firsts else None
    target.attributes = {**source.attributes, **target.attributes}
    record = {
        "into": str(target.id),
        "reason": reason,
        "at": utcnow().isoformat(),
        "identities": [str(i) for i in moved_identities],
        "conversations": [str(c.id) for c in moved_conversations],
    }
    source.merged_into_id = target.id
    source.attributes = {**source.attributes, "_merge": record}
    await session.flush()
    return record


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
