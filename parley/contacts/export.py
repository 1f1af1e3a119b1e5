"""Exporting contacts to CSV or XLSX, streamed in pages so a large export never sits in memory whole."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator
from typing import Any

from openpyxl import Workbook
from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.contacts.attributes import definitions
from parley.contacts.tags import tags_for_contacts
from parley.models import Contact, User

PAGE = 2000
MAX_ROWS = 1_000_000  # XLSX holds 1,048,576 rows per sheet
STANDARD = [
    ("id", "ID"),
    ("display_name", "Name"),
    ("phone", "Phone"),
    ("email", "Email"),
    ("gender", "Gender"),
    ("language", "Language"),
    ("city", "City"),
    ("province", "Province"),
    ("country", "Country"),
    ("birthday", "Birthday"),
    ("lifecycle_stage", "Stage"),
    ("owner", "Owner"),
    ("tags", "Tags"),
    ("last_inbound_at", "Last inbound"),
    ("last_followed_at", "Last followed"),
    ("created_at", "Created"),
]


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _safe_csv(value: Any) -> Any:
    # A cell starting with = + - @ is a formula to a spreadsheet: neutralise it (CSV injection).
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@") and not value[1:2].isdigit():
        return "'" + value
    return value


async def rows(session: AsyncSession, condition: ColumnElement[bool]) -> AsyncIterator[list[Any]]:
    defs = await definitions(session)
    yield [label for _key, label in STANDARD] + [d.label for d in defs]
    owners = {u.id: u.name for u in (await session.scalars(select(User))).all()}
    last_id: uuid.UUID | None = None
    written = 0
    while written < MAX_ROWS:
        query = select(Contact).where(condition).order_by(Contact.id).limit(PAGE)
        if last_id is not None:
            query = query.where(Contact.id > last_id)
        page = list((await session.scalars(query)).all())
        if not page:
            return
        tags = await tags_for_contacts(session, [c.id for c in page])
        for contact in page:
            values: dict[str, Any] = {key: getattr(contact, key, None) for key, _ in STANDARD}
            values["owner"] = owners.get(contact.owner_id, "") if contact.owner_id else ""
            values["tags"] = [t.name for t in tags.get(contact.id, [])]
            line = [_cell(values[key]) for key, _ in STANDARD]
            line += [_cell(contact.attributes.get(d.key)) for d in defs]
            yield line
            written += 1
        last_id = page[-1].id


async def csv_bytes(session: AsyncSession, condition: ColumnElement[bool]) -> AsyncIterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    # A BOM so that Excel opens UTF-8 (Chinese names) correctly.
    yield "\ufeff".encode()
    async for line in rows(session, condition):
        writer.writerow([_safe_csv(v) for v in line])
        if buffer.tell() > 64_000:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()


async def xlsx_bytes(session: AsyncSession, condition: ColumnElement[bool]) -> bytes:
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("Contacts")
    async for line in rows(session, condition):
        sheet.append([_safe_csv(v) for v in line])
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()
