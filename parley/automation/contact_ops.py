"""Contact writes made by automation flows: tags through the contacts' tag service, attributes as values."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from parley.contacts.tags import apply_tags
from parley.exceptions import NotFound
from parley.models import Contact


async def _contact(session: AsyncSession, contact_id: uuid.UUID) -> Contact:
    contact = await session.get(Contact, contact_id)
    if contact is None:
        raise NotFound("No such contact")
    return contact


async def add_tag(session: AsyncSession, contact_id: uuid.UUID, name: str) -> None:
    await _contact(session, contact_id)
    await apply_tags(session, [contact_id], [name], "automation")


async def set_attribute(session: AsyncSession, contact_id: uuid.UUID, name: str, value: Any) -> None:
    contact = await _contact(session, contact_id)
    contact.attributes = {**(contact.attributes or {}), name: value}
