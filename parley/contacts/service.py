"""Reading contacts: the list with its search and filters, the 360° view and its timeline."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.contacts.segments import Group, compile_filter, parse_filter
from parley.exceptions import NotFound
from parley.models import (
    ChannelAccount,
    Contact,
    ContactIdentity,
    ContactTag,
    Conversation,
    Message,
    Segment,
    TimelineEvent,
    User,
)


@dataclass
class ListQuery:
    """What the contact list is asked for; every part narrows the result."""

    q: str = ""
    tag_id: uuid.UUID | None = None
    segment_id: uuid.UUID | None = None
    stage: str = ""
    owner_id: uuid.UUID | None = None
    unowned: bool = False
    filter: Group | None = None
    ids: list[uuid.UUID] = field(default_factory=list)


async def list_condition(session: AsyncSession, query: ListQuery) -> ColumnElement[bool]:
    conditions: list[ColumnElement[bool]] = [Contact.merged_into_id.is_(None)]
    text = query.q.strip()
    if text:
        like = or_(
            Contact.display_name.contains(text, autoescape=True),
            Contact.email.contains(text, autoescape=True),
            Contact.id.in_(select(ContactIdentity.contact_id).where(ContactIdentity.value == text)),
        )
        digits = "".join(ch for ch in text if ch.isdigit())
        if len(digits) >= 4:
            like = or_(like, Contact.phone.contains(digits, autoescape=True))
        conditions.append(like)
    if query.tag_id is not None:
        conditions.append(
            Contact.id.in_(select(ContactTag.contact_id).where(ContactTag.tag_id == query.tag_id))
        )
    if query.segment_id is not None:
        segment = await session.get(Segment, query.segment_id)
        if segment is None:
            raise NotFound("No such segment")
        conditions.append(compile_filter(parse_filter(segment.definition)))
    if query.filter is not None:
        conditions.append(compile_filter(query.filter))
    if query.stage:
        conditions.append(Contact.lifecycle_stage == query.stage)
    if query.owner_id is not None:
        conditions.append(Contact.owner_id == query.owner_id)
    if query.unowned:
        conditions.append(Contact.owner_id.is_(None))
    if query.ids:
        conditions.append(Contact.id.in_(query.ids))
    return and_(*conditions)


async def search(
    session: AsyncSession, query: ListQuery, *, limit: int = 50, offset: int = 0
) -> tuple[list[Contact], int]:
    condition = await list_condition(session, query)
    total = int(await session.scalar(select(func.count()).select_from(Contact).where(condition)) or 0)
    rows = (
        await session.scalars(
            select(Contact)
            .where(condition)
            .order_by(Contact.last_inbound_at.desc().nulls_last(), Contact.created_at.desc(), Contact.id)
            .limit(limit)
            .offset(offset)
        )
    ).all()
    return list(rows), total


async def matching_ids(session: AsyncSession, query: ListQuery, *, cap: int = 100_000) -> list[uuid.UUID]:
    """Ids for a bulk action on "everything that matches"; capped so one click cannot lock the database."""
    condition = await list_condition(session, query)
    return list((await session.scalars(select(Contact.id).where(condition).limit(cap))).all())


def ids_query(condition: ColumnElement[bool]) -> Select[Any]:
    return select(Contact.id).where(condition)


async def get_contact(session: AsyncSession, contact_id: uuid.UUID) -> Contact:
    contact = await session.get(Contact, contact_id)
    if contact is None:
        raise NotFound("No such contact")
    return contact


async def identities_of(
    session: AsyncSession, contact_id: uuid.UUID
) -> list[tuple[ContactIdentity, str, str]]:
    """Each identity with its account's name and channel type (empty for global identities)."""
    rows = await session.execute(
        select(ContactIdentity, ChannelAccount.name, ChannelAccount.type)
        .outerjoin(ChannelAccount, ChannelAccount.id == ContactIdentity.account_id)
        .where(ContactIdentity.contact_id == contact_id)
        .order_by(ContactIdentity.created_at)
    )
    return [(identity, name or "", kind or "") for identity, name, kind in rows.all()]


@dataclass
class TimelineItem:
    at: datetime
    kind: str  # "message" or the event type: subscribe, unsubscribe, scan, menu_click, location…
    channel: str
    account: str
    direction: str = ""
    text: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    conversation_id: uuid.UUID | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "kind": self.kind,
            "channel": self.channel,
            "account": self.account,
            "direction": self.direction,
            "text": self.text,
            "data": self.data,
            "conversation_id": str(self.conversation_id) if self.conversation_id else None,
        }


async def timeline(
    session: AsyncSession, contact_id: uuid.UUID, *, before: datetime | None = None, limit: int = 50
) -> list[TimelineItem]:
    """Messages and contact events across every channel and account, newest first."""
    accounts = {a.id: (a.name, a.type) for a in (await session.scalars(select(ChannelAccount))).all()}
    message_query = select(Message).where(Message.contact_id == contact_id, Message.kind == "message")
    event_query = select(TimelineEvent).where(TimelineEvent.contact_id == contact_id)
    if before is not None:
        message_query = message_query.where(Message.created_at < before)
        event_query = event_query.where(TimelineEvent.occurred_at < before)
    messages = (await session.scalars(message_query.order_by(Message.created_at.desc()).limit(limit))).all()
    events = (
        await session.scalars(event_query.order_by(TimelineEvent.occurred_at.desc()).limit(limit))
    ).all()
    items: list[TimelineItem] = []
    for message in messages:
        name, kind = accounts.get(message.account_id, ("", ""))
        items.append(
            TimelineItem(
                at=message.created_at,
                kind="message",
                channel=kind,
                account=name,
                direction=message.direction,
                text=message.text or f"[{message.type}]",
                conversation_id=message.conversation_id,
            )
        )
    for event in events:
        name, kind = accounts.get(event.account_id, ("", "")) if event.account_id else ("", "")
        items.append(
            TimelineItem(at=event.occurred_at, kind=event.type, channel=kind, account=name, data=event.data)
        )
    items.sort(key=lambda item: item.at, reverse=True)
    return items[:limit]


LOCATION_EVENTS = ("location_report", "location")


def _point(at: datetime, location: dict[str, Any], source: str) -> dict[str, Any]:
    return {
        "at": at,
        "latitude": location.get("latitude"),
        "longitude": location.get("longitude"),
        "precision": location.get("precision"),
        "label": location.get("name") or location.get("address") or "",
        "source": source,
    }


async def location_track(
    session: AsyncSession, contact_id: uuid.UUID, *, limit: int = 100
) -> list[dict[str, Any]]:
    """Where the contact has been, newest first: automatic reports (WeChat's location events)
    and locations they sent as messages, kept as a history rather than one last point."""
    events = (
        await session.scalars(
            select(TimelineEvent)
            .where(TimelineEvent.contact_id == contact_id, TimelineEvent.type.in_(LOCATION_EVENTS))
            .order_by(TimelineEvent.occurred_at.desc())
            .limit(limit)
        )
    ).all()
    messages = (
        await session.scalars(
            select(Message)
            .where(Message.contact_id == contact_id, Message.type == "location")
            .order_by(Message.created_at.desc())
            .limit(limit)
        )
    ).all()
    track = [_point(e.occurred_at, e.data.get("location") or {}, "report") for e in events]
    track += [_point(m.created_at, m.content.get("location") or {}, "message") for m in messages]
    track = [p for p in track if p["latitude"] is not None and p["longitude"] is not None]
    track.sort(key=lambda p: p["at"], reverse=True)
    return track[:limit]


async def conversations_of(
    session: AsyncSession, contact_id: uuid.UUID
) -> list[tuple[Conversation, str, str]]:
    rows = await session.execute(
        select(Conversation, ChannelAccount.name, ChannelAccount.type)
        .join(ChannelAccount, ChannelAccount.id == Conversation.account_id)
        .where(Conversation.contact_id == contact_id)
        .order_by(Conversation.last_message_at.desc().nulls_last())
        .limit(50)
    )
    return [(c, name, kind) for c, name, kind in rows.all()]


async def agents(session: AsyncSession) -> list[User]:
    return list(
        (await session.scalars(select(User).where(User.is_active.is_(True)).order_by(User.name))).all()
    )


async def assign_owner(
    session: AsyncSession, contact_ids: list[uuid.UUID], owner_id: uuid.UUID | None
) -> int:
    """Sets (or clears, with None) the owner of many contacts; the owner must be an active user."""
    from sqlalchemy import update

    from parley.exceptions import UnprocessableEntity

    if owner_id is not None:
        user = await session.get(User, owner_id)
        if user is None or not user.is_active:
            raise UnprocessableEntity("The owner must be an active user")
    changed = 0
    for start in range(0, len(contact_ids), 5000):
        chunk = contact_ids[start : start + 5000]
        result = await session.execute(
            update(Contact)
            .where(Contact.id.in_(chunk))
            .values(owner_id=owner_id)
            .execution_options(synchronize_session=False)
        )
        changed += int(getattr(result, "rowcount", 0) or 0)
    return changed
