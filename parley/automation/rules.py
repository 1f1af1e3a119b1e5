"""Keyword and event rules: storage, the per-account compiled matcher, and choosing a rule for a message."""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from rapidfuzz import fuzz
from sqlalchemy import Table, bindparam, delete, event, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

from parley.automation.matching import Keyword, Match, Matcher, MatchKind, normalize
from parley.automation.schemas import Reply, RuleIn, Schedule, UnmatchedGroup
from parley.db import transaction_list
from parley.exceptions import NotFound
from parley.kit.config_cache import ConfigCache
from parley.kit.types import utcnow
from parley.models import AutoReplyRule, ChannelAccount, Flow, UnmatchedText


@dataclass(frozen=True)
class CompiledRule:
    id: uuid.UUID
    name: str
    replies: tuple[Reply, ...]
    flow_id: uuid.UUID | None
    schedule: Schedule | None

    def active(self, at: datetime) -> bool:
        return self.schedule is None or self.schedule.active(at)

    def pick_reply(self, rng: random.Random | None = None) -> Reply | None:
        if not self.replies:
            return None
        return (rng or random).choice(self.replies)


def _compiled(rule: AutoReplyRule) -> CompiledRule:
    return CompiledRule(
        id=rule.id,
        name=rule.name,
        replies=tuple(Reply.model_validate(r) for r in rule.replies),
        flow_id=rule.flow_id,
        schedule=Schedule.model_validate(rule.schedule) if rule.schedule else None,
    )


@dataclass
class AccountRules:
    stamp: tuple[Any, ...]
    matcher: Matcher[CompiledRule]
    events: list[tuple[str, str | None, int, CompiledRule]]  # (trigger, scene, priority, rule)


# Compiled rules per account, kept for parley/kit/config_cache.py's TTL; when it runs out, a cheap
# stamp read (count, newest edit) decides whether the rules must be rebuilt, so an edit on another
# node is honoured within the TTL and an unchanged rule set is never recompiled.
_CACHE: ConfigCache[uuid.UUID, AccountRules] = ConfigCache("automation.rules")

_STAMP = select(func.count(AutoReplyRule.id), func.max(AutoReplyRule.updated_at)).where(
    AutoReplyRule.account_id == bindparam("account_id")
)


async def _stamp(session: AsyncSession, account_id: uuid.UUID) -> tuple[Any, ...]:
    row = (await session.execute(_STAMP, {"account_id": account_id})).one()
    return (int(row[0]), row[1])


async def account_rules(session: AsyncSession, account_id: uuid.UUID) -> AccountRules:
    async def load() -> AccountRules:
        stamp = await _stamp(session, account_id)
        known = _CACHE.peek(session, account_id)
        if known is not None and known.stamp == stamp:
            return known
        return await _build(session, account_id, stamp)

    return await _CACHE.get(session, account_id, load)


async def _build(session: AsyncSession, account_id: uuid.UUID, stamp: tuple[Any, ...]) -> AccountRules:
    rows = (
        await session.scalars(
            select(AutoReplyRule)
            .where(AutoReplyRule.account_id == account_id, AutoReplyRule.is_active.is_(True))
            .order_by(AutoReplyRule.created_at, AutoReplyRule.id)
        )
    ).all()
    keywords: list[Keyword[CompiledRule]] = []
    events: list[tuple[str, str | None, int, CompiledRule]] = []
    for row in rows:
        compiled = _compiled(row)
        if row.trigger == "keyword":
            keywords.extend(
                Keyword(
                    text=k["text"],
                    kind=MatchKind(k.get("match", "contains")),
                    target=compiled,
                    priority=row.priority,
                )
                for k in row.keywords
            )
        else:
            events.append((row.trigger, row.scene, row.priority, compiled))
    return AccountRules(stamp=stamp, matcher=Matcher(keywords), events=events)


async def match_text(
    session: AsyncSession, account_id: uuid.UUID, text: str, *, at: datetime | None = None
) -> Match[CompiledRule] | None:
    """The best rule in effect now for the text, or None."""
    rules = await account_rules(session, account_id)
    moment = at or utcnow()
    return rules.matcher.best(text, accept=lambda r: r.active(moment))


async def event_rule(
    session: AsyncSession,
    account_id: uuid.UUID,
    trigger: str,
    scene: str | None = None,
    *,
    at: datetime | None = None,
) -> CompiledRule | None:
    """The follow rule, or the scan rule of a scene (falling back to a scan rule without a scene)."""
    rules = await account_rules(session, account_id)
    moment = at or utcnow()
    candidates = [
        (0 if (s is not None and s == scene) else 1, -priority, rule)
        for t, s, priority, rule in rules.events
        if t == trigger and (s is None or s == scene) and rule.active(moment)
    ]
    if not candidates:
        return None
    candidates.sort(key=lambda c: (c[0], c[1]))
    return candidates[0][2]


# --- storage ---------------------------------------------------------------------------------


async def _check_refs(session: AsyncSession, data: RuleIn) -> None:
    if await session.get(ChannelAccount, data.account_id) is None:
        raise NotFound("No such channel account")
    if data.flow_id is not None and await session.get(Flow, data.flow_id) is None:
        raise NotFound("No such flow")


def _apply(rule: AutoReplyRule, data: RuleIn) -> None:
    rule.account_id = data.account_id
    rule.name = data.name
    rule.trigger = data.trigger
    rule.keywords = [k.model_dump() for k in data.keywords]
    rule.scene = data.scene
    rule.replies = [r.model_dump(mode="json", exclude_none=True) for r in data.replies]
    rule.flow_id = data.flow_id
    rule.schedule = data.schedule.model_dump(mode="json") if data.schedule else None
    rule.priority = data.priority
    rule.is_active = data.is_active
    rule.updated_at = utcnow()


async def create_rule(session: AsyncSession, data: RuleIn) -> AutoReplyRule:
    await _check_refs(session, data)
    rule = AutoReplyRule(id=uuid.uuid4())
    _apply(rule, data)
    session.add(rule)
    await session.flush()
    _CACHE.changed(session)
    return rule


async def update_rule(session: AsyncSession, rule_id: uuid.UUID, data: RuleIn) -> AutoReplyRule:
    rule = await get_rule(session, rule_id)
    await _check_refs(session, data)
    _apply(rule, data)
    await session.flush()
    _CACHE.changed(session)
    return rule


async def get_rule(session: AsyncSession, rule_id: uuid.UUID) -> AutoReplyRule:
    rule = await session.get(AutoReplyRule, rule_id)
    if rule is None:
        raise NotFound("No such rule")
    return rule


async def delete_rule(session: AsyncSession, rule_id: uuid.UUID) -> None:
    await get_rule(session, rule_id)
    await session.execute(delete(AutoReplyRule).where(AutoReplyRule.id == rule_id))
    _CACHE.changed(session)


async def list_rules(session: AsyncSession, account_id: uuid.UUID | None = None) -> Sequence[AutoReplyRule]:
    query = select(AutoReplyRule).order_by(AutoReplyRule.created_at)
    if account_id is not None:
        query = query.where(AutoReplyRule.account_id == account_id)
    return (await session.scalars(query)).all()


# --- unmatched texts ------------------------------------------------------------------------

UNMATCHED_WINDOW = 2000
GROUP_SIMILARITY = 80.0


async def record_unmatched(
    session: AsyncSession, *, account_id: uuid.UUID, contact_id: uuid.UUID | None, text: str
) -> None:
    """Keeps the text for review; written with the transaction's other unmatched texts when it commits.

    One multi-row INSERT per transaction instead of a statement per text: with nothing else to
    write, automation then emits no SQL at all for an ordinary unanswered message.
    """
    normalized = normalize(text)
    if not normalized:
        return
    if not session.info.get(_LISTENING):
        session.info[_LISTENING] = True
        event.listen(session.sync_session, "before_commit", _write_unmatched)
        event.listen(session.sync_session, "after_transaction_end", _drop_unmatched)
    # A savepoint that rolls back takes its texts back with it (parley.db.transaction_list).
    transaction_list(session, _PENDING).append(
        {
            "account_id": account_id,
            "contact_id": contact_id,
            "text": text[:2000],
            "normalized": normalized[:2000],
            "created_at": utcnow(),
        }
    )


_UNMATCHED = insert(cast(Table, UnmatchedText.__table__))
_PENDING = "automation.unmatched.pending"
_LISTENING = "automation.unmatched.listening"


def _write_unmatched(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint: the texts wait for the transaction itself
    rows = session.info.pop(_PENDING, None)
    if rows:
        session.execute(_UNMATCHED, rows)


def _drop_unmatched(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        # Rolled back (a commit has taken them already): they were never stored.
        session.info.pop(_PENDING, None)


def group_texts(
    items: Sequence[tuple[str, str, datetime]], threshold: float = GROUP_SIMILARITY
) -> list[UnmatchedGroup]:
    """Greedy grouping by rapidfuzz similarity; the most frequent groups first.

    Identical texts collapse first, so the frequent phrasing of a question becomes
    the group's sample; near phrasings (a typo, an extra particle) join it.
    """
    by_text: dict[str, list[tuple[str, datetime]]] = {}
    for raw, normalized, at in items:
        by_text.setdefault(normalized, []).append((raw, at))
    ordered = sorted(by_text.items(), key=lambda kv: -len(kv[1]))
    groups: list[tuple[str, list[str], int, datetime]] = []
    for normalized, occurrences in ordered:
        last = max(at for _, at in occurrences)
        for i, (head, members, count, last_at) in enumerate(groups):
            if fuzz.ratio(head, normalized) >= threshold or (
                min(len(head), len(normalized)) >= 4 and fuzz.partial_ratio(head, normalized) >= 95
            ):
                groups[i] = (
                    head,
                    [*members, occurrences[0][0]],
                    count + len(occurrences),
                    max(last_at, last),
                )
                break
        else:
            groups.append((normalized, [occurrences[0][0]], len(occurrences), last))
    result = [
        UnmatchedGroup(sample=members[0], count=count, texts=members, last_at=last_at)
        for _head, members, count, last_at in groups
    ]
    result.sort(key=lambda g: (-g.count, g.sample))
    return result


async def unmatched_groups(session: AsyncSession, account_id: uuid.UUID) -> list[UnmatchedGroup]:
    rows = (
        await session.execute(
            select(UnmatchedText.text, UnmatchedText.normalized, UnmatchedText.created_at)
            .where(UnmatchedText.account_id == account_id)
            .order_by(UnmatchedText.id.desc())
            .limit(UNMATCHED_WINDOW)
        )
    ).all()
    return group_texts([(r[0], r[1], r[2]) for r in rows])
