"""Fetching customers' platform profiles after first contact.

WeChat pushes carry only an OpenID; the nickname, avatar, region and, above
all, the UnionID that ties a person's OpenIDs across a brand's accounts come
from the user-info API. A background job fetches them in batches of 100
(``user/info/batchget``), outside any write transaction, within the daily
quota: every call is counted against the account's ``user_info`` quota before
it is made (:mod:`parley.contacts.sync.quota`, delivery's quota counters), and
an account whose quota is used up, by our count or by the platform's 45009, is
left alone until the reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import defaultdict
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from parley.channels.base import ChannelError, ChannelPermanentError, ChannelQuotaExceededError, ChannelType
from parley.channels.runtime import runtime
from parley.contacts.identity import Key, attach_identity, find_identity
from parley.contacts.merge import live_contact_id, merge_contacts
from parley.contacts.sync import quota
from parley.context import Context
from parley.conversations.pipeline import publish_conversation_updated
from parley.db import session_scope
from parley.kit.types import utcnow
from parley.models import ChannelAccount, Contact, ContactIdentity, Conversation, IdentityKind
from parley.worker import loop

log = structlog.get_logger()

BATCH = 100
# Finding the identities still without a profile scans them; doing it once for several batches keeps
# a 50,000-follower sync from rescanning 500 times.
BATCHES_PER_ROUND = 10
EVERY_S = 2.0
_GENDER = {1: "male", 2: "female"}
_PROFILE_KEYS = ("nickname", "headimgurl", "city", "province", "country", "language", "unionid")


_DEFERRED = "contacts.profiles.deferred"


def _deferred(ctx: Context) -> dict[uuid.UUID, datetime]:
    """Accounts whose ``user_info`` quota is used up, and when it resets (this process's view)."""
    found: dict[uuid.UUID, datetime] = ctx.extras.setdefault(_DEFERRED, {})
    now = utcnow()
    for account_id in [a for a, until in found.items() if until <= now]:
        del found[account_id]
    return found


async def _pending(ctx: Context) -> dict[uuid.UUID, list[tuple[uuid.UUID, str]]]:
    waiting = list(_deferred(ctx))
    async with session_scope(ctx.sessionmaker, write=False) as session:
        rows = (
            await session.execute(
                select(ContactIdentity.account_id, ContactIdentity.id, ContactIdentity.value)
                .join(ChannelAccount, ChannelAccount.id == ContactIdentity.account_id)
                .where(
                    ContactIdentity.kind == IdentityKind.wechat_openid,
                    ContactIdentity.profile_synced_at.is_(None),
                    ChannelAccount.is_active.is_(True),
                    ContactIdentity.account_id.not_in(waiting),
                )
                .order_by(ContactIdentity.created_at)
                .limit(BATCH * BATCHES_PER_ROUND)
            )
        ).all()
    grouped: dict[uuid.UUID, list[tuple[uuid.UUID, str]]] = defaultdict(list)
    for account_id, identity_id, openid in rows:
        if account_id is not None:
            grouped[account_id].append((identity_id, openid))
    return grouped


async def apply_profile(
    session: AsyncSession,
    ctx: Context,
    *,
    account: ChannelAccount,
    identity_id: uuid.UUID,
    profile: dict[str, Any],
) -> None:
    """Writes one fetched WeChat profile onto its contact, merging on a known UnionID."""
    identity = await session.get(ContactIdentity, identity_id)
    if identity is None:
        return
    identity.profile_synced_at = utcnow()
    contact = await session.get(Contact, await live_contact_id(session, identity.contact_id))
    if contact is None:
        return
    if profile.get("subscribe") == 0 and not profile.get("nickname"):
        return  # no longer a follower: the platform reveals nothing more
    if profile.get("nickname"):
        contact.display_name = str(profile["nickname"])
    if profile.get("headimgurl"):
        contact.avatar_url = str(profile["headimgurl"])
    for name in ("city", "province", "country", "language"):
        if profile.get(name):
            setattr(contact, name, str(profile[name]))
    if profile.get("sex") in _GENDER:
        contact.gender = _GENDER[int(profile["sex"])]
    unionid = profile.get("unionid")
    if unionid:
        key = Key(IdentityKind.wechat_unionid, "", str(unionid), True)
        existing = await find_identity(session, key)
        if existing is not None and existing.contact_id != contact.id:
            target = await session.get(Contact, await live_contact_id(session, existing.contact_id))
            if target is not None and target.id != contact.id:
                await merge_contacts(session, source=contact, target=target, reason="same WeChat UnionID")
                moved = (
                    await session.scalars(select(Conversation).where(Conversation.contact_id == target.id))
                ).all()
                for conversation in moved:
                    publish_conversation_updated(session, ctx, conversation, target)
                return
        await attach_identity(session, contact, account, key)
    active = (
        await session.scalars(
            select(Conversation).where(
                Conversation.contact_id == contact.id, Conversation.status != "resolved"
            )
        )
    ).all()
    for conversation in active:
        publish_conversation_updated(session, ctx, conversation, contact)


async def sync_round(ctx: Context) -> int:
    """One round: up to ``BATCHES_PER_ROUND`` batches per account; returns how many identities were settled."""
    settled = 0
    for account_id, items in (await _pending(ctx)).items():
        async with session_scope(ctx.sessionmaker, write=False) as session:
            account = await session.get(ChannelAccount, account_id)
        if account is None or account.type != ChannelType.wechat:
            continue
        for start in range(0, len(items), BATCH):
            done = await _fetch_batch(ctx, account, items[start : start + BATCH])
            if done is None:
                break
            settled += done
    return settled


async def _fetch_batch(
    ctx: Context, account: ChannelAccount, items: list[tuple[uuid.UUID, str]]
) -> int | None:
    """Fetches and stores one batch of profiles; None when this account should be left for now."""
    adapter: Any = runtime(ctx).adapter(account)
    reset_at = await quota.take(ctx, account, "user_info")
    if reset_at is not None:
        log.warning("profiles.quota_used_up", account_id=str(account.id), until=reset_at.isoformat())
        _deferred(ctx)[account.id] = reset_at
        return None
    try:
        profiles = await adapter.client.batch_user_info([openid for _id, openid in items])
    except ChannelQuotaExceededError:
        log.warning("profiles.quota_exhausted", account_id=str(account.id))
        _deferred(ctx)[account.id] = await quota.exhaust(ctx, account, "user_info")
        return None
    except ChannelPermanentError as exc:
        # Nothing to learn for these ids (e.g. invalid OpenIDs): settle them so they are not retried forever.
        log.warning("profiles.refused", account_id=str(account.id), detail=exc.message)
        profiles = []
    except ChannelError as exc:
        log.warning("profiles.fetch_failed", account_id=str(account.id), detail=exc.message)
        return None
    by_openid = {str(p.get("openid")): p for p in profiles}
    async with session_scope(ctx.sessionmaker) as session:
        bare: list[uuid.UUID] = []
        for identity_id, openid in items:
            profile = by_openid.get(openid, {})
            if not _has_news(profile):
                bare.append(identity_id)
                continue
            await apply_profile(session, ctx, account=account, identity_id=identity_id, profile=profile)
        if bare:
            # Most profiles carry nothing to store (the platform stopped returning names in
            # 2021): settle them in one statement, so a 50,000-follower sync stays cheap.
            await session.execute(
                update(ContactIdentity).where(ContactIdentity.id.in_(bare)).values(profile_synced_at=utcnow())
            )
    return len(items)


def _has_news(profile: dict[str, Any]) -> bool:
    """Whether :func:`apply_profile` would change anything besides the identity's sync time."""
    if profile.get("subscribe") == 0 and not profile.get("nickname"):
        return False
    return any(profile.get(name) for name in _PROFILE_KEYS) or profile.get("sex") in _GENDER


@loop("contacts.profiles")
async def sync_profiles(ctx: Context, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            settled = await sync_round(ctx)
            if settled:
                log.info("profiles.synced", identities=settled)
        except Exception:
            log.exception("profiles.round_failed")
            settled = 0
        if not settled:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=EVERY_S)
