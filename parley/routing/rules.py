"""Entry rules and VIP rules: which queue a conversation enters, and who goes ahead."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.models import Contact, ContactTag, EntryRule, Tag


async def contact_tag_names(session: AsyncSession, contact_id: uuid.UUID) -> set[str]:
    """The contact's tag names, for VIP and entry rules."""
    names = await session.scalars(
        select(Tag.name)
        .join(ContactTag, ContactTag.tag_id == Tag.id)
        .where(ContactTag.contact_id == contact_id)
    )
    return set(names.all())


class ContactCondition(BaseModel):
    """Holds when the contact has any of ``tags`` (if given) and every attribute in ``attributes``."""

    tags: list[str] = Field(default_factory=list)
    attributes: dict[str, Any] = Field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.tags and not self.attributes

    def matches(self, tags: set[str], attributes: dict[str, Any]) -> bool:
        if self.tags and not tags.intersection(self.tags):
            return False
        return all(_same(attributes.get(key), value) for key, value in self.attributes.items())


def _same(actual: Any, expected: Any) -> bool:
    if isinstance(actual, list):
        return expected in actual
    if isinstance(actual, str) and isinstance(expected, str):
        return actual.strip().lower() == expected.strip().lower()
    return bool(actual == expected)


EventKind = Literal["any", "message", "menu_click", "qr_scene"]


class RuleConditions(ContactCondition):
    """Everything given must hold. ``keywords``: any of them in the message text (case-insensitive)."""

    account_id: uuid.UUID | None = None
    event: EventKind = "any"
    keywords: list[str] = Field(default_factory=list)
    event_key: str | None = None  # the menu button's key or the QR code's scene


class Trigger(BaseModel):
    """What the customer just did, as the rules see it."""

    account_id: uuid.UUID
    event: Literal["message", "menu_click", "qr_scene", "other"]
    text: str = ""
    event_key: str = ""


def rule_matches(
    conditions: RuleConditions, trigger: Trigger, tags: set[str], attributes: dict[str, Any]
) -> bool:
    if conditions.account_id is not None and conditions.account_id != trigger.account_id:
        return False
    if conditions.event != "any" and conditions.event != trigger.event:
        return False
    if conditions.keywords:
        text = trigger.text.lower()
        if not any(k.strip().lower() and k.strip().lower() in text for k in conditions.keywords):
            return False
    if conditions.event_key is not None and conditions.event_key != trigger.event_key:
        return False
    return conditions.matches(tags, attributes)


async def first_matching_rule(
    session: AsyncSession, *, trigger: Trigger, contact: Contact
) -> EntryRule | None:
    rules = (
        await session.scalars(
            select(EntryRule)
            .where(EntryRule.is_active.is_(True))
            .order_by(EntryRule.position, EntryRule.name)
        )
    ).all()
    if not rules:
        return None
    tags = await contact_tag_names(session, contact.id)
    attributes = dict(contact.attributes or {})
    for rule in rules:
        if rule_matches(RuleConditions.model_validate(rule.conditions), trigger, tags, attributes):
            return rule
    return None
