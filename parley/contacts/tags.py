"""Tags and tag groups: creating them, and putting them on and taking them off contacts in bulk.

Every path that tags contacts (agents one by one or in bulk, automation, import,
the API) goes through :func:`add_tags` / :func:`apply_tags`, so that the source
of each tag is recorded the same way and a tag already present is never a
duplicate row nor an error.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from parley.contacts.fields import FieldError
from parley.exceptions import Conflict, NotFound, UnprocessableEntity
from parley.kit.types import utcnow
from parley.models import Contact, ContactTag, Tag, TagGroup

SOURCES = ("agent", "automation", "import", "api")
_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
DEFAULT_COLOR = "#64748b"
# Parameters per statement stay well under SQLite's limit (32766) and asyncpg's (32767).
_CHUNK = 5000


def check_color(color: str, *, allow_empty: bool = False) -> str:
    color = color.strip()
    if allow_empty and not color:
        return ""
    if not _COLOR.match(color):
        raise UnprocessableEntity(f"{color!r} is not a colour (use #rrggbb)")
    return color.lower()


def check_name(name: str, what: str = "tag") -> str:
    name = name.strip()
    if not name:
        raise UnprocessableEntity(f"A {what} needs a name")
    if len(name) > 100:
        raise UnprocessableEntity(f"A {what} name has at most 100 characters")
    return name


async def create_group(session: AsyncSession, *, name: str, color: str = DEFAULT_COLOR) -> TagGroup:
    name = check_name(name, "tag group")
    if await session.scalar(select(TagGroup.id).where(TagGroup.name == name)):
        raise Conflict(f"A tag group named {name!r} exists")
    position = await session.scalar(select(func.coalesce(func.max(TagGroup.position), 0))) or 0
    group = TagGroup(name=name, color=check_color(color), position=position + 1)
    session.add(group)
    await session.flush()
    return group


async def update_group(
    session: AsyncSession, group_id: uuid.UUID, *, name: str | None = None, color: str | None = None
) -> TagGroup:
    group = await session.get(TagGroup, group_id)
    if group is None:
        raise NotFound("No such tag group")
    if name is not None:
        name = check_name(name, "tag group")
        clash = await session.scalar(
            select(TagGroup.id).where(TagGroup.name == name, TagGroup.id != group.id)
        )
        if clash:
            raise Conflict(f"A tag group named {name!r} exists")
        group.name = name
    if color is not None:
        group.color = check_color(color)
    await session.flush()
    return group


async def delete_group(session: AsyncSession, group_id: uuid.UUID) -> None:
    group = await session.get(TagGroup, group_id)
    if group is None:
        raise NotFound("No such tag group")
    # Its tags stay (the foreign key sets their group to NULL): contacts keep their labels.
    await session.delete(group)
    await session.flush()


async def create_tag(
    session: AsyncSession, *, name: str, group_id: uuid.UUID | None = None, color: str = ""
) -> Tag:
    name = check_name(name)
    if await session.scalar(select(Tag.id).where(Tag.name == name)):
        raise Conflict(f"A tag named {name!r} exists")
    if group_id is not None and await session.get(TagGroup, group_id) is None:
        raise UnprocessableEntity("No such tag group")
    tag = Tag(name=name, group_id=group_id, color=check_color(color, allow_empty=True))
    session.add(tag)
    await session.flush()
    return tag


async def update_tag(
    session: AsyncSession,
    tag_id: uuid.UUID,
    *,
    name: str | None = None,
    group_id: uuid.UUID | str | None = "keep",
    color: str | None = None,
) -> Tag:
    tag = await session.get(Tag, tag_id)
    if tag is None:
        raise NotFound("No such tag")
    if name is not None:
        name = check_name(name)
        if await session.scalar(select(Tag.id).where(Tag.name == name, Tag.id != tag.id)):
            raise Conflict(f"A tag named {name!r} exists")
        tag.name = name
    if group_id != "keep":
        if isinstance(group_id, uuid.UUID) and await session.get(TagGroup, group_id) is None:
            raise UnprocessableEntity("No such tag group")
        tag.group_id = group_id if isinstance(group_id, uuid.UUID) else None
    if color is not None:
        tag.color = check_color(color, allow_empty=True)
    await session.flush()
    return tag


async def delete_tag(session: AsyncSession, tag_id: uuid.UUID) -> None:
    tag = await session.get(Tag, tag_id)
    if tag is None:
        raise NotFound("No such tag")
    await session.execute(delete(ContactTag).where(ContactTag.tag_id == tag.id))
    await session.delete(tag)
    await session.flush()


def tag_color(tag: Tag, groups: dict[uuid.UUID, TagGroup]) -> str:
    if tag.color:
        return tag.color
    group = groups.get(tag.group_id) if tag.group_id else None
    return group.color if group else DEFAULT_COLOR


async def all_tags(session: AsyncSession) -> tuple[list[Tag], dict[uuid.UUID, TagGroup]]:
    groups = {g.id: g for g in (await session.scalars(select(TagGroup).order_by(TagGroup.position))).all()}
    tags = list((await session.scalars(select(Tag).order_by(Tag.name))).all())
    return tags, groups


async def tag_counts(session: AsyncSession) -> dict[uuid.UUID, int]:
    rows = await session.execute(select(ContactTag.tag_id, func.count()).group_by(ContactTag.tag_id))
    return {tag_id: int(n) for tag_id, n in rows.all()}


async def _existing_contacts(session: AsyncSession, contact_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    found: list[uuid.UUID] = []
    ids = list(dict.fromkeys(contact_ids))
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        found.extend((await session.scalars(select(Contact.id).where(Contact.id.in_(chunk)))).all())
    return found


async def add_tags(
    session: AsyncSession,
    contact_ids: Sequence[uuid.UUID],
    tag_ids: Sequence[uuid.UUID],
    *,
    source: str = "agent",
    added_by_id: uuid.UUID | None = None,
) -> int:
    """Puts tags on contacts; pairs already present are left as they are. Returns the rows added."""
    if source not in SOURCES:
        raise UnprocessableEntity(f"Unknown tag source {source!r}")
    tag_ids = list(dict.fromkeys(tag_ids))
    known = (
        set((await session.scalars(select(Tag.id).where(Tag.id.in_(tag_ids)))).all()) if tag_ids else set()
    )
    missing = [str(t) for t in tag_ids if t not in known]
    if missing:
        raise UnprocessableEntity(f"Unknown tags: {', '.join(missing)}")
    contacts = await _existing_contacts(session, contact_ids)
    added = 0
    for tag_id in tag_ids:
        for start in range(0, len(contacts), _CHUNK):
            chunk = contacts[start : start + _CHUNK]
            present = set(
                (
                    await session.scalars(
                        select(ContactTag.contact_id).where(
                            ContactTag.tag_id == tag_id, ContactTag.contact_id.in_(chunk)
                        )
                    )
                ).all()
            )
            rows = [
                {"tag_id": tag_id, "contact_id": cid, "source": source, "added_by_id": added_by_id}
                for cid in chunk
                if cid not in present
            ]
            if rows:
                await session.execute(insert(ContactTag), rows)
                added += len(rows)
    return added


async def remove_tags(
    session: AsyncSession, contact_ids: Sequence[uuid.UUID], tag_ids: Sequence[uuid.UUID]
) -> int:
    removed = 0
    ids = list(dict.fromkeys(contact_ids))
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        result = await session.execute(
            delete(ContactTag).where(ContactTag.contact_id.in_(chunk), ContactTag.tag_id.in_(list(tag_ids)))
        )
        removed += int(getattr(result, "rowcount", 0) or 0)
    return removed


async def tags_by_name(session: AsyncSession, names: Iterable[str], *, create: bool = True) -> list[Tag]:
    """The tags with these names, creating the missing ones (ungrouped) when ``create``."""
    wanted = list(dict.fromkeys(check_name(n) for n in names if n and n.strip()))
    if not wanted:
        return []
    if create:
        await ensure_tags(session, wanted)
    found = {t.name: t for t in (await session.scalars(select(Tag).where(Tag.name.in_(wanted)))).all()}
    missing = [n for n in wanted if n not in found]
    if missing:
        raise UnprocessableEntity(f"Unknown tags: {', '.join(missing)}")
    return [found[n] for n in wanted]


async def apply_tags(
    session: AsyncSession,
    contact_ids: Sequence[uuid.UUID],
    names: Iterable[str],
    source: str,
    *,
    added_by_id: uuid.UUID | None = None,
    create: bool = True,
) -> int:
    """Tags contacts by tag *name* (what import and automation have); unknown names become new tags."""
    tags = await tags_by_name(session, names, create=create)
    return await add_tags(session, contact_ids, [t.id for t in tags], source=source, added_by_id=added_by_id)


async def tags_of(session: AsyncSession, contact_id: uuid.UUID) -> list[tuple[Tag, ContactTag]]:
    rows = await session.execute(
        select(Tag, ContactTag)
        .join(ContactTag, ContactTag.tag_id == Tag.id)
        .where(ContactTag.contact_id == contact_id)
        .order_by(Tag.name)
    )
    return [(tag, link) for tag, link in rows.all()]


async def tags_for_contacts(
    session: AsyncSession, contact_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[Tag]]:
    result: dict[uuid.UUID, list[Tag]] = {cid: [] for cid in contact_ids}
    if not contact_ids:
        return result
    rows = await session.execute(
        select(ContactTag.contact_id, Tag)
        .join(Tag, Tag.id == ContactTag.tag_id)
        .where(ContactTag.contact_id.in_(list(contact_ids)))
        .order_by(Tag.name)
    )
    for cid, tag in rows.all():
        result.setdefault(cid, []).append(tag)
    return result


# The bulk paths of import: one statement per batch, not one per row.

MAX_TAG = 100
_SPLIT = re.compile(r"[,;，；、]")


def parse_tag_names(raw: Any) -> list[str]:
    """Comma-separated names (also ; and the Chinese comma), trimmed, without repeats."""
    if raw is None:
        return []
    items = raw if isinstance(raw, list) else _SPLIT.split(str(raw))
    names: list[str] = []
    for item in items:
        name = " ".join(str(item).split())
        if not name:
            continue
        if len(name) > MAX_TAG:
            raise FieldError("tags", f"{name[:30]!r}… is longer than {MAX_TAG} characters")
        if name not in names:
            names.append(name)
    return names


def _insert(session: AsyncSession) -> Any:
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


async def ensure_tags(session: AsyncSession, names: Iterable[str]) -> dict[str, uuid.UUID]:
    """The ids of the named tags, creating the missing ones (a concurrent creator is not an error)."""
    wanted = sorted(set(names))
    if not wanted:
        return {}
    found = dict((await session.execute(select(Tag.name, Tag.id).where(Tag.name.in_(wanted)))).all())
    missing = [name for name in wanted if name not in found]
    if missing:
        now = utcnow()
        await session.execute(
            _insert(session)(Tag).on_conflict_do_nothing(index_elements=["name"]),
            [
                {"id": uuid.uuid4(), "name": n, "color": "", "created_at": now, "updated_at": now}
                for n in missing
            ],
        )
        found.update((await session.execute(select(Tag.name, Tag.id).where(Tag.name.in_(missing)))).all())
    return found


async def add_contact_tags(
    session: AsyncSession,
    pairs: Iterable[tuple[uuid.UUID, uuid.UUID]],
    *,
    source: str,
    added_by_id: uuid.UUID | None = None,
) -> None:
    """Adds (contact, tag) pairs known to be absent."""
    now = utcnow()
    rows = [
        {"contact_id": c, "tag_id": t, "source": source, "added_by_id": added_by_id, "created_at": now}
        for c, t in pairs
    ]
    if rows:
        await session.execute(insert(ContactTag), rows)
