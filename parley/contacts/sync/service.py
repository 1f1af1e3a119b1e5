"""Follower sync: every follower of a WeChat account becomes a contact, then gets its profile.

Stage one walks ``/cgi-bin/user/get`` (10,000 OpenIDs a page). Each page is
written in one transaction together with the cursor (``next_openid``), so a
worker killed mid-walk resumes at the first page not yet stored; a page fetched
twice is harmless because followers are upserted by OpenID identity.

Stage two is the profile fetcher of :mod:`parley.contacts.profiles`, which
already fetches every OpenID identity without a profile in batches of 100
(``user/info/batchget``) within the ``user_info`` quota; the sync only watches
its progress for this account and finishes when no profile is missing. Both
stages count their calls against the account's daily quotas before making them
(:mod:`parley.contacts.sync.quota`) and wait for the reset instead of failing.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

import structlog
from sqlalchemy import Table, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from parley.channels.base import (
    ChannelError,
    ChannelPermanentError,
    ChannelQuotaExceededError,
    ChannelRetriableError,
    ChannelType,
    Sender,
)
from parley.channels.runtime import runtime
from parley.contacts.identity import placeholder_name
from parley.contacts.imports.ids import uuid7
from parley.contacts.sync import quota
from parley.context import Context
from parley.db import session_scope
from parley.exceptions import Conflict, UnprocessableEntity
from parley.kit.types import utcnow
from parley.models import ChannelAccount, Contact, ContactIdentity, FollowerSync, IdentityKind, SyncStatus

log = structlog.get_logger()

_CHUNK = 2000  # OpenIDs per IN list
PROFILE_CHECK_S = 2.0
RETRY_S = 15.0


async def start_sync(
    session: AsyncSession, account: ChannelAccount, *, actor_id: uuid.UUID | None
) -> FollowerSync:
    if account.type != ChannelType.wechat:
        raise UnprocessableEntity("Only WeChat accounts have followers to sync")
    running = await session.scalar(
        select(FollowerSync.id).where(
            FollowerSync.account_id == account.id, FollowerSync.status.in_(SyncStatus.active())
        )
    )
    if running is not None:
        raise Conflict("A sync of this account is already running")
    sync = FollowerSync(
        id=uuid.uuid4(),
        account_id=account.id,
        created_by_id=actor_id,
        status=SyncStatus.queued.value,
        details={},
    )
    session.add(sync)
    await session.flush()
    return sync


async def recent_syncs(session: AsyncSession, limit: int = 20) -> list[FollowerSync]:
    return list(
        (
            await session.scalars(select(FollowerSync).order_by(FollowerSync.created_at.desc()).limit(limit))
        ).all()
    )


# --- the worker side ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    sync_id: uuid.UUID
    token: str


class LeaseLost(Exception):
    pass


def _claimable(now: Any) -> Any:
    return (
        FollowerSync.status.in_(SyncStatus.active()),
        or_(FollowerSync.due_at.is_(None), FollowerSync.due_at <= now),
        or_(FollowerSync.lease_until.is_(None), FollowerSync.lease_until < now),
    )


async def claim_sync(ctx: Context) -> Claim | None:
    now = utcnow()
    async with session_scope(ctx.sessionmaker, write=False) as session:
        if await session.scalar(select(FollowerSync.id).where(*_claimable(now)).limit(1)) is None:
            return None
    async with session_scope(ctx.sessionmaker) as session:
        sync = await session.scalar(
            select(FollowerSync)
            .where(*_claimable(now))
            .order_by(FollowerSync.due_at.is_not(None), FollowerSync.created_at)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        if sync is None:
            return None
        token = secrets.token_hex(16)
        if sync.status in (SyncStatus.queued, SyncStatus.waiting_quota):
            sync.status = (SyncStatus.profiles if sync.details.get("list_done") else SyncStatus.running).value
        sync.lease_token = token
        sync.lease_until = now + timedelta(seconds=ctx.settings.contacts_job_lease_s)
        sync.started_at = sync.started_at or now
        sync.due_at = None
        return Claim(sync.id, token)


async def _held(session: AsyncSession, claim: Claim) -> FollowerSync:
    sync = await session.scalar(
        select(FollowerSync)
        .where(FollowerSync.id == claim.sync_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if sync is None or sync.status not in SyncStatus.active() or sync.lease_token != claim.token:
        raise LeaseLost()
    return sync


async def _release(ctx: Context, claim: Claim, **values: Any) -> None:
    """Lets go of the job (optionally changing it): any worker may take it again from ``due_at``."""
    async with session_scope(ctx.sessionmaker) as session:
        await session.execute(
            update(FollowerSync)
            .where(FollowerSync.id == claim.sync_id, FollowerSync.lease_token == claim.token)
            .values(lease_until=None, **values)
        )


async def upsert_followers(session: AsyncSession, account: ChannelAccount, openids: list[str]) -> int:
    """A contact and an OpenID identity for every follower not known yet; returns how many were new."""
    scope = str(account.id)
    known: set[str] = set()
    for start in range(0, len(openids), _CHUNK):
        chunk = openids[start : start + _CHUNK]
        known.update(
            (
                await session.scalars(
                    select(ContactIdentity.value).where(
                        ContactIdentity.kind == IdentityKind.wechat_openid,
                        ContactIdentity.scope == scope,
                        ContactIdentity.value.in_(chunk),
                    )
                )
            ).all()
        )
    fresh = [o for o in dict.fromkeys(openids) if o not in known]
    if not fresh:
        return 0
    now = utcnow()
    contacts: list[dict[str, Any]] = []
    identities: list[dict[str, Any]] = []
    for openid in fresh:
        contact_id = uuid7()
        contacts.append(
            {
                "id": contact_id,
                "display_name": placeholder_name(account, Sender(id=openid)),
                "avatar_url": "",
                "gender": "unknown",
                "language": "",
                "city": "",
                "province": "",
                "country": "",
                "lifecycle_stage": "new",
                "attributes": {},
                "inbound_count": 0,
                "outbound_count": 0,
                "created_at": now,
                "updated_at": now,
            }
        )
        identities.append(
            {
                "id": uuid7(),
                "contact_id": contact_id,
                "account_id": account.id,
                "kind": IdentityKind.wechat_openid,
                "scope": scope,
                "value": openid,
                "verified": True,
                "created_at": now,
            }
        )
    await session.execute(insert(cast(Table, Contact.__table__)), contacts)
    await session.execute(insert(cast(Table, ContactIdentity.__table__)), identities)
    return len(fresh)


async def profile_counts(session: AsyncSession, account_id: uuid.UUID) -> tuple[int, int]:
    """(OpenID identities of the account, those whose profile has been fetched)."""
    row = (
        await session.execute(
            select(func.count(), func.count(ContactIdentity.profile_synced_at)).where(
                ContactIdentity.kind == IdentityKind.wechat_openid, ContactIdentity.scope == str(account_id)
            )
        )
    ).one()
    return int(row[0]), int(row[1])


async def _walk(ctx: Context, claim: Claim, account: ChannelAccount, cursor: str) -> bool:
    """Walks the follower list from ``cursor``; True when it reached the end, False when it stopped."""
    client: Any = runtime(ctx).adapter(account).client  # type: ignore[attr-defined]
    while True:
        reset_at = await quota.take(ctx, account, "user_get")
        if reset_at is not None:
            await _release(ctx, claim, status=SyncStatus.waiting_quota.value, due_at=reset_at)
            return False
        try:
            page = await client.followers_page(cursor)
        except ChannelQuotaExceededError as exc:
            reset_at = await quota.exhaust(ctx, account, "user_get")
            reset_at = exc.reset_at or reset_at
            await _release(ctx, claim, status=SyncStatus.waiting_quota.value, due_at=reset_at)
            return False
        except ChannelPermanentError as exc:
            if exc.code == 40003 and cursor:
                # The cursor's follower has left since (the list is a snapshot): walk again from the
                # start; followers already stored are recognised by OpenID and not added twice.
                log.warning("contacts.sync.cursor_gone", sync_id=str(claim.sync_id))
                cursor = ""
                async with session_scope(ctx.sessionmaker) as session:
                    sync = await _held(session, claim)
                    sync.next_openid = ""
                    sync.details = {**sync.details, "restarts": int(sync.details.get("restarts", 0)) + 1}
                continue
            await _release(
                ctx, claim, status=SyncStatus.failed.value, error=exc.message, finished_at=utcnow()
            )
            return False
        except (ChannelRetriableError, ChannelError) as exc:
            retry = getattr(exc, "retry_after_s", None) or RETRY_S
            log.warning("contacts.sync.page_failed", sync_id=str(claim.sync_id), detail=exc.message)
            await _release(ctx, claim, due_at=utcnow() + timedelta(seconds=retry))
            return False
        done = not page.openids or not page.next_openid or page.next_openid == cursor
        async with session_scope(ctx.sessionmaker) as session:
            sync = await _held(session, claim)
            created = await upsert_followers(session, account, page.openids)
            sync.pages += 1
            sync.followers_seen += len(page.openids)
            sync.contacts_created += created
            sync.total_followers = max(page.total, sync.followers_seen)
            sync.next_openid = page.next_openid if not done else sync.next_openid
            sync.lease_until = utcnow() + timedelta(seconds=ctx.settings.contacts_job_lease_s)
            if done:
                sync.details = {**sync.details, "list_done": True}
                sync.status = SyncStatus.profiles.value
                sync.profiles_total, sync.profiles_fetched = await profile_counts(session, account.id)
        log.info("contacts.sync.page", sync_id=str(claim.sync_id), followers=len(page.openids), new=created)
        if done:
            return True
        cursor = page.next_openid


async def _watch_profiles(ctx: Context, claim: Claim, account_id: uuid.UUID) -> None:
    async with session_scope(ctx.sessionmaker) as session:
        sync = await _held(session, claim)
        sync.profiles_total, sync.profiles_fetched = await profile_counts(session, account_id)
        if sync.profiles_fetched >= sync.profiles_total:
            sync.status = SyncStatus.done.value
            sync.finished_at = utcnow()
        else:
            # The profile fetcher works on; look again shortly (or after its quota resets).
            sync.due_at = utcnow() + timedelta(seconds=PROFILE_CHECK_S)
        sync.lease_until = None


async def run_sync(ctx: Context, claim: Claim) -> None:
    async with session_scope(ctx.sessionmaker, write=False) as session:
        sync = await session.get(FollowerSync, claim.sync_id)
        account = await session.get(ChannelAccount, sync.account_id) if sync else None
    if sync is None:
        return
    try:
        if account is None or not account.is_active:
            await _release(
                ctx,
                claim,
                status=SyncStatus.failed.value,
                error="The account is gone or inactive",
                finished_at=utcnow(),
            )
            return
        if not sync.details.get("list_done") and not await _walk(ctx, claim, account, sync.next_openid):
            return
        await _watch_profiles(ctx, claim, account.id)
    except LeaseLost:
        log.info("contacts.sync.lease_lost", sync_id=str(claim.sync_id))
