"""Lifecycle stages (new, active, dormant, lost) computed by rules the administrator sets.

A stage follows from the contact's stored timestamps alone, so the same rule
is evaluated two ways that always agree: in Python for one contact when an
event arrives (:func:`refresh_stage`, called by the inbox pipeline), and as a
few set-based UPDATEs over all contacts by the worker loop
(:func:`apply_rules`), which is what moves people into ``dormant`` when
nothing happens at all.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, false, func, not_, or_, update
from sqlalchemy.ext.asyncio import AsyncSession

from parley.contacts.schemas import LifecycleRules
from parley.kit.config_cache import ConfigCache
from parley.kit.types import utcnow
from parley.models import AppSetting, Contact
from parley.worker import periodic

RULES_KEY = "contacts.lifecycle_rules"
EVERY_S = 15 * 60.0


_RULES: ConfigCache[None, LifecycleRules] = ConfigCache(RULES_KEY)


async def get_rules(session: AsyncSession) -> LifecycleRules:
    """The rules as stored now (for the settings page and the periodic job)."""
    row = await session.get(AppSetting, RULES_KEY)
    return LifecycleRules.model_validate(row.value) if row is not None else LifecycleRules()


async def current_rules(session: AsyncSession) -> LifecycleRules:
    """The rules for per-event use, cached (parley/kit/config_cache.py says how fresh)."""
    return await _RULES.get(session, None, lambda: get_rules(session))


async def set_rules(session: AsyncSession, rules: LifecycleRules) -> None:
    row = await session.get(AppSetting, RULES_KEY)
    if row is None:
        session.add(AppSetting(key=RULES_KEY, value=rules.model_dump()))
    else:
        row.value = rules.model_dump()
    await session.flush()
    _RULES.changed(session)


def _last_activity(contact: Contact) -> datetime | None:
    return contact.last_inbound_at or contact.last_followed_at or contact.created_at


def compute_stage(contact: Contact, rules: LifecycleRules, now: datetime) -> str:
    unfollowed, followed, inbound = (
        contact.last_unfollowed_at,
        contact.last_followed_at,
        contact.last_inbound_at,
    )
    activity = _last_activity(contact)
    if (
        rules.lost_on_unfollow
        and unfollowed is not None
        and (followed is None or unfollowed >= followed)
        and (inbound is None or inbound < unfollowed)
    ):
        return "lost"
    if (
        rules.lost_after_days
        and activity is not None
        and activity < now - timedelta(days=rules.lost_after_days)
    ):
        return "lost"
    if activity is not None and activity < now - timedelta(days=rules.dormant_after_days):
        return "dormant"
    return "active" if inbound is not None else "new"


def _conditions(rules: LifecycleRules, now: datetime) -> dict[str, ColumnElement[bool]]:
    """Mutually exclusive SQL conditions per stage, never NULL, mirroring :func:`compute_stage`."""
    c = Contact
    activity = func.coalesce(c.last_inbound_at, c.last_followed_at, c.created_at)
    unfollowed: ColumnElement[bool] = (
        and_(
            c.last_unfollowed_at.is_not(None),
            or_(c.last_followed_at.is_(None), c.last_unfollowed_at >= c.last_followed_at),
            or_(c.last_inbound_at.is_(None), c.last_inbound_at < c.last_unfollowed_at),
        )
        if rules.lost_on_unfollow
        else false()
    )
    stale: ColumnElement[bool] = (
        activity < now - timedelta(days=rules.lost_after_days) if rules.lost_after_days else false()
    )
    lost = or_(unfollowed, stale)
    dormant_raw = activity < now - timedelta(days=rules.dormant_after_days)
    return {
        "lost": lost,
        "dormant": and_(not_(lost), dormant_raw),
        "active": and_(not_(lost), not_(dormant_raw), c.last_inbound_at.is_not(None)),
        "new": and_(not_(lost), not_(dormant_raw), c.last_inbound_at.is_(None)),
    }


async def apply_rules(session: AsyncSession, *, now: datetime | None = None) -> dict[str, int]:
    """Moves every live contact to the stage the rules give it; returns how many moved into each."""
    rules = await get_rules(session)
    moved: dict[str, int] = {}
    for stage, condition in _conditions(rules, now or utcnow()).items():
        result = await session.execute(
            update(Contact)
            .where(Contact.merged_into_id.is_(None), Contact.lifecycle_stage != stage, condition)
            .values(lifecycle_stage=stage)
            .execution_options(synchronize_session=False)
        )
        moved[stage] = int(getattr(result, "rowcount", 0) or 0)
    return moved


async def refresh_stage(session: AsyncSession, contact: Contact, rules: LifecycleRules | None = None) -> str:
    """Re-evaluates one contact after an event (message, follow, unfollow)."""
    rules = rules or await current_rules(session)
    stage = compute_stage(contact, rules, utcnow())
    if contact.lifecycle_stage != stage:
        contact.lifecycle_stage = stage
    return stage


@periodic("contacts.lifecycle", every_s=EVERY_S)
async def lifecycle_job(session: AsyncSession) -> dict[str, int] | None:
    moved = await apply_rules(session)
    return moved if any(moved.values()) else None
