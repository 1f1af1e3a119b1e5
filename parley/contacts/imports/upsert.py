"""Writing a batch of validated rows: find by key, compare, insert or update in bulk.

A batch costs a fixed handful of statements whatever its size: one select for
the keys, one for the contacts found, one for the other identities, one for
their tags, then one executemany each for new contacts, new identities, new
tags and changed contacts. A row whose values are already stored writes
nothing, so importing the same file twice changes nothing the second time.

Identities other than the key (a phone, an email, an OpenID in the row) are
added to the contact when nobody has them yet; one that belongs to another
contact is left where it is (the two may be one person, but merging is a
decision for a person, not for an import).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from parley.contacts.imports.ids import uuid7
from parley.contacts.imports.mapping import Identity, Row
from parley.contacts.imports.rows import insert_rows
from parley.contacts.tags import ensure_tags
from parley.kit.types import utcnow
from parley.models import Contact, ContactIdentity, ContactTag, IdentityKind

_CONTACTS = cast(Table, Contact.__table__)
_IDENTITIES = cast(Table, ContactIdentity.__table__)
_CONTACT_TAGS = cast(Table, ContactTag.__table__)
_STANDARD_COLUMNS = (
    "display_name",
    "phone",
    "email",
    "gender",
    "language",
    "city",
    "province",
    "country",
    "avatar_url",
    "birthday",
)


_NEW_CONTACT_COLUMNS = ("id", "attributes", *_STANDARD_COLUMNS)
_NEW_CONTACT_DEFAULTS: dict[str, Any] = {
    **dict.fromkeys(("phone", "email", "birthday")),
    **dict.fromkeys(("language", "city", "province", "country", "avatar_url"), ""),
    "gender": "unknown",
}
_ABSENT = object()
_NEW_IDENTITY_COLUMNS = ("id", "contact_id", "account_id", "kind", "scope", "value")


class Outcome(StrEnum):
    created = "created"
    updated = "updated"
    unchanged = "unchanged"
    rejected = "rejected"


@dataclass(frozen=True)
class Result:
    number: int
    outcome: Outcome
    contact_id: uuid.UUID | None = None
    reason: str = ""


def _identity_filter(identities: list[Identity]) -> Any:
    by_scope: dict[tuple[str, str], list[str]] = defaultdict(list)
    for identity in identities:
        by_scope[(identity.kind, identity.scope)].append(identity.value)
    return or_(
        *(
            and_(
                ContactIdentity.kind == kind,
                ContactIdentity.scope == scope,
                ContactIdentity.value.in_(sorted(set(values))),
            )
            for (kind, scope), values in by_scope.items()
        )
    )


async def _owners(session: AsyncSession, identities: list[Identity]) -> dict[Identity, uuid.UUID]:
    if not identities:
        return {}
    rows = await session.execute(
        select(
            ContactIdentity.kind, ContactIdentity.scope, ContactIdentity.value, ContactIdentity.contact_id
        ).where(_identity_filter(identities))
    )
    return {Identity(k, s, v): c for k, s, v, c in rows.all()}


async def _by_column(session: AsyncSession, key: str, values: list[str]) -> dict[str, uuid.UUID]:
    """Contacts whose phone or email column holds the value but who have no identity for it."""
    if not values or key not in ("phone", "email"):
        return {}
    column = Contact.phone if key == "phone" else func.lower(Contact.email)
    # Merged contacts are skipped here rather than in the WHERE clause: given
    # ``merged_into_id IS NULL`` SQLite's planner walks ix_contacts_merged_into_id, i.e.
    # every live contact, once per batch, instead of probing the phone or email index.
    rows = await session.execute(
        select(column, Contact.id, Contact.merged_into_id)
        .where(column.in_(values))
        .order_by(Contact.created_at)
    )
    found: dict[str, uuid.UUID] = {}
    for value, contact_id, merged_into in rows.all():
        if merged_into is None:
            found.setdefault(str(value), contact_id)
    return found


def _default_name(row: Row) -> str:
    if row.key.kind in (IdentityKind.phone, IdentityKind.email):
        return row.key.value
    return str(row.standard.get("phone") or row.standard.get("email") or row.key.value)[:200]


async def upsert_rows(
    session: AsyncSession,
    rows: list[Row],
    *,
    source: str,
    actor_id: uuid.UUID | None = None,
) -> list[Result]:
    """Writes the rows in the caller's transaction; returns one result per row, in order."""
    if not rows:
        return []
    now = utcnow()
    key_kind = rows[0].key.kind
    owners = await _owners(session, [r.key for r in rows])
    missing = [r.key.value for r in rows if r.key not in owners]
    fallback = await _by_column(session, key_kind, missing)
    target: dict[int, uuid.UUID] = {}
    for index, row in enumerate(rows):
        found = owners.get(row.key) or fallback.get(row.key.value)
        if found is not None:
            target[index] = found

    existing_ids = sorted(set(target.values()))
    # contact → (attributes, {standard column: value}); plain rows, not mappings, as this runs
    # for every row of a re-import.
    current: dict[uuid.UUID, tuple[dict[str, Any], dict[str, Any]]] = {}
    if existing_ids:
        columns = [_CONTACTS.c.id, _CONTACTS.c.attributes, *(_CONTACTS.c[name] for name in _STANDARD_COLUMNS)]
        for record in await session.execute(select(*columns).where(_CONTACTS.c.id.in_(existing_ids))):
            current[record[0]] = (record[1] or {}, dict(zip(_STANDARD_COLUMNS, record[2:], strict=True)))

    others = [identity for row in rows for identity in row.identities]
    other_owners = await _owners(session, others)
    tag_ids = await ensure_tags(session, {name for row in rows for name in row.tags})
    tagged: set[tuple[uuid.UUID, uuid.UUID]] = set()
    if existing_ids and tag_ids:
        tagged = set(
            (
                await session.execute(
                    select(ContactTag.contact_id, ContactTag.tag_id).where(
                        ContactTag.contact_id.in_(existing_ids), ContactTag.tag_id.in_(tag_ids.values())
                    )
                )
            ).all()
        )

    results: list[Result] = []
    new_contacts: list[tuple[Any, ...]] = []  # in the order of _NEW_CONTACT_COLUMNS
    new_identities: list[tuple[Any, ...]] = []  # in the order of _NEW_IDENTITY_COLUMNS
    new_tags: list[tuple[uuid.UUID, uuid.UUID]] = []
    changed: list[dict[str, Any]] = []
    claimed: dict[uuid.UUID, int] = {}  # contact → the row of this batch that wrote it
    taken: set[Identity] = set()

    def attach(contact_id: uuid.UUID, identity: Identity) -> bool:
        owner = other_owners.get(identity) or owners.get(identity)
        if owner is not None or identity in taken:
            return False
        taken.add(identity)
        new_identities.append(
            (
                uuid7(),
                contact_id,
                uuid.UUID(identity.scope) if identity.kind == IdentityKind.wechat_openid else None,
                identity.kind,
                identity.scope,
                identity.value,
            )
        )
        return True

    for index, row in enumerate(rows):
        contact_id = target.get(index)
        if contact_id is None and row.key in taken:
            results.append(
                Result(row.number, Outcome.rejected, None, "the key is already used by another row")
            )
            continue
        if contact_id is not None and contact_id in claimed:
            results.append(
                Result(
                    row.number, Outcome.rejected, contact_id, f"the same contact as row {claimed[contact_id]}"
                )
            )
            continue
        if contact_id is None:
            contact_id = uuid7()
            values = {**_NEW_CONTACT_DEFAULTS, **row.standard}
            values["display_name"] = row.standard.get("display_name") or _default_name(row)
            new_contacts.append(
                (contact_id, dict(row.attributes), *(values[name] for name in _STANDARD_COLUMNS))
            )
            attach(contact_id, row.key)
            for identity in row.identities:
                attach(contact_id, identity)
            new_tags.extend((contact_id, tag_ids[name]) for name in row.tags)
            claimed[contact_id] = row.number
            results.append(Result(row.number, Outcome.created, contact_id))
            continue
        claimed[contact_id] = row.number
        stored_attributes, stored = current[contact_id]
        dirty = any(stored[name] != value for name, value in row.standard.items()) or any(
            stored_attributes.get(name, _ABSENT) != value for name, value in row.attributes.items()
        )
        if row.key not in owners:
            dirty = attach(contact_id, row.key) or dirty
        for identity in row.identities:
            dirty = attach(contact_id, identity) or dirty
        for name in row.tags:
            pair = (contact_id, tag_ids[name])
            if pair not in tagged:
                tagged.add(pair)
                new_tags.append(pair)
                dirty = True
        if dirty:
            after = {**stored, **row.standard}
            changed.append(
                {
                    **{f"v_{name}": value for name, value in after.items()},
                    "v_id": contact_id,
                    "v_attributes": {**stored_attributes, **row.attributes},
                    "v_updated_at": now,
                }
            )
            results.append(Result(row.number, Outcome.updated, contact_id))
        else:
            results.append(Result(row.number, Outcome.unchanged, contact_id))

    await insert_rows(
        session,
        _CONTACTS,
        _NEW_CONTACT_COLUMNS,
        new_contacts,
        {
            "lifecycle_stage": "new",
            "inbound_count": 0,
            "outbound_count": 0,
            "created_at": now,
            "updated_at": now,
        },
    )
    await insert_rows(
        session, _IDENTITIES, _NEW_IDENTITY_COLUMNS, new_identities, {"verified": False, "created_at": now}
    )
    await insert_rows(
        session,
        _CONTACT_TAGS,
        ("contact_id", "tag_id"),
        new_tags,
        {"source": source, "added_by_id": actor_id, "created_at": now},
    )
    if changed:
        statement = (
            update(_CONTACTS)
            .where(_CONTACTS.c.id == bindparam("v_id", type_=_CONTACTS.c.id.type))
            .values(
                {
                    # Bind names must differ from column names in an UPDATE's SET clause.
                    **{
                        name: bindparam(f"v_{name}", type_=_CONTACTS.c[name].type)
                        for name in _STANDARD_COLUMNS
                    },
                    "attributes": bindparam("v_attributes", type_=_CONTACTS.c.attributes.type),
                    "updated_at": bindparam("v_updated_at", type_=_CONTACTS.c.updated_at.type),
                }
            )
        )
        await session.execute(statement, changed)
    return results
