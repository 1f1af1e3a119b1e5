"""Tags from an import's tags column: names, created when missing, added (never removed).

The contacts branch has its own tag service (``parley/contacts/tags.py``); this
is the bulk path an import needs (one query per batch, not one per row) and is
meant to be folded into it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from parley.contacts.fields import FieldError
from parley.kit.types import utcnow
from parley.models import ContactTag, Tag

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
