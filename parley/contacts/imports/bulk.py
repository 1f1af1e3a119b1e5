"""The bulk upsert API: the same validation, key semantics and writes as a file import.

Each item is turned into a row of cells in a fixed column order and checked by
:func:`parley.contacts.imports.mapping.validate_row`, so a value the import
rejects, the API rejects with the same words.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from parley.contacts.fields import STANDARD_FIELDS
from parley.contacts.imports.mapping import (
    ATTR,
    OPENID,
    TAGS,
    UNIONID,
    Identity,
    MappingError,
    Row,
    compile_spec,
)
from parley.contacts.imports.mapping import validate_row as check_row
from parley.contacts.imports.service import definitions, wechat_accounts
from parley.contacts.imports.upsert import Outcome, upsert_rows
from parley.exceptions import UnprocessableEntity

MAX_ITEMS = 1000
_PLAIN = (*STANDARD_FIELDS, TAGS, OPENID, UNIONID)


@dataclass
class ItemResult:
    index: int
    status: str
    contact_id: uuid.UUID | None = None
    errors: list[dict[str, str]] = field(default_factory=list)


async def bulk_upsert(
    session: AsyncSession,
    *,
    key: str,
    account_id: uuid.UUID | None,
    items: list[dict[str, Any]],
    actor_id: uuid.UUID | None,
) -> list[ItemResult]:
    if len(items) > MAX_ITEMS:
        raise UnprocessableEntity(f"At most {MAX_ITEMS} contacts per request")
    defs = await definitions(session)
    targets = [*_PLAIN, *(ATTR + d.key for d in defs)]
    if account_id is None:
        targets.remove(OPENID)
    try:
        spec = compile_spec(
            headers=list(targets),
            mapping=list(targets),
            key=key,
            account_id=account_id,
            definitions=defs,
            wechat_account_ids={a.id for a in await wechat_accounts(session)},
        )
    except MappingError as exc:
        raise UnprocessableEntity(str(exc)) from None
    known_attributes = {d.key for d in defs}
    results: list[ItemResult | None] = [None] * len(items)
    rows: list[Row] = []
    seen: dict[Identity, int] = {}
    for index, item in enumerate(items):
        attributes = item.get("attributes") or {}
        unknown = [name for name in item if name not in (*targets, "attributes")]
        if not isinstance(attributes, dict):
            unknown.append("attributes")
            attributes = {}
        unknown += [ATTR + name for name in attributes if name not in known_attributes]
        if unknown:
            results[index] = ItemResult(
                index,
                Outcome.rejected,
                errors=[{"field": n, "message": "is not a contact field"} for n in unknown],
            )
            continue
        cells = [attributes.get(t[len(ATTR) :]) if t.startswith(ATTR) else item.get(t) for t in spec.mapping]
        checked = check_row(spec, index, cells)
        if not isinstance(checked, Row):
            results[index] = ItemResult(
                index, Outcome.rejected, errors=[{"field": r.column, "message": r.reason} for r in checked]
            )
            continue
        first = seen.setdefault(checked.key, index)
        if first != index:
            results[index] = ItemResult(
                index, Outcome.rejected, errors=[{"field": key, "message": f"the same key as item {first}"}]
            )
            continue
        rows.append(checked)
    for result in await upsert_rows(session, rows, source="api", actor_id=actor_id):
        errors = [{"field": key, "message": result.reason}] if result.reason else []
        results[result.number] = ItemResult(result.number, result.outcome, result.contact_id, errors)
    return [r for r in results if r is not None]
