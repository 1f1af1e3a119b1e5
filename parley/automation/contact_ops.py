"""Contact writes made by automation, behind one function each so the tag table can take over at merge.

``add_tag`` keeps tags in ``contacts.attributes["tags"]`` (a list) on this branch;
the contact-tags work replaces its body with the real tag table.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from parley.exceptions import NotFound
from parley.models import Contact


async def _contact(session: AsyncSession, contact_id: uuid.UUID) -> Contact:
    contact = await session.get(Contact, contact_id)
    if contact is None:
        raise NotFound("No such contact")
    return contact


async def add_tag(session: AsyncSession, contact_id: uuid.UUID, name: str) -> None:
    contact = await _contact(session, contact_id)
    tags = list((contact.attributes or {}).get("tags") or [])
    if name not in tags:
        tags.append(name)
    # A new dict, so SQLAlchemy sees the JSON column change.
    contact.attributes = {**(contact.attributes or {}), "tags": tags}


async def set_attribute(session: AsyncSession, contact_id: uuid.UUID, name: str, value: Any) -> None:
    contact = await _contact(session, contact_id)
    contact.attributes = {**(contact.attributes or {}), name: value}
