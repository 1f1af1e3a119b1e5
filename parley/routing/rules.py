"""Entry rules and VIP rules: which queue a conversation enters, and who goes ahead."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.kit.config_cache import ConfigCache
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


def trigger_matches(conditions: RuleConditions, trigger: Trigger) -> bool:
    """The conditions on what the customer did (account, event, keywords, key), not on who they are."""
    if conditions.account_id is not None and conditions.account_id != trigger.account_id:
        return False
    if conditions.event != "any" and conditions.event != trigger.event:
        return False
    if conditions.keywords:
        text = trigger.text.lower()
        if not any(k.strip().lower() and k.strip().lower() in text for k in conditions.keywords):
            return False
    return conditions.event_key is None or conditions.event_key == trigger.event_key


def rule_matches(
    conditions: RuleConditions, trigger: Trigger, tags: set[str], attributes: dict[str, Any]
) -> bool:
    return trigger_matches(conditions, trigger) and conditions.matches(tags, attributes)


@dataclass(frozen=True)
class ActiveRule:
    """An active entry rule as the inbound pipeline evaluates it (parsed once, cached)."""

    id: uuid.UUID
    name: str
    queue_id: uuid.UUID
    conditions: RuleConditions


# Read by every inbound message; parley/kit/config_cache.py says how fresh. The admin service
# (parley/routing/admin.py) calls ``rules_changed`` for every edit of rules or queues.
_RULES: ConfigCache[None, tuple[ActiveRule, ...]] = ConfigCache("routing.entry_rules")

_ACTIVE_RULES = (
    select(EntryRule.id, EntryRule.name, EntryRule.queue_id, EntryRule.conditions)
    .where(EntryRule.is_active.is_(True))
    .order_by(EntryRule.position, EntryRule.name)
)


def rules_changed(session: AsyncSession) -> None:
    _RULES.changed(session)


async def active_rules(session: AsyncSession) -> tuple[ActiveRule, ...]:
    async def load() -> tuple[ActiveRule, ...]:
        rows = (await session.execute(_ACTIVE_RULES)).all()
        return tuple(
            ActiveRule(id=r[0], name=r[1], queue_id=r[2], conditions=RuleConditions.model_validate(r[3]))
            for r in rows
        )

    return await _RULES.get(session, None, load)


async def first_matching_rule(
    session: AsyncSession, *, trigger: Trigger, contact: Contact
) -> ActiveRule | None:
    tags: set[str] | None = None  # read only when a rule gets as far as asking
    attributes = contact.attributes or {}
    for rule in await active_rules(session):
        conditions = rule.conditions
        if not trigger_matches(conditions, trigger):
            continue
        if conditions.tags and tags is None:
            tags = await contact_tag_names(session, contact.id)
        if conditions.matches(tags or set(), attributes):
            return rule
    return None
