"""WeChat follower sync against the real simulator: paging, resume after SIGKILL, daily quotas.

Figures come from the simulator's own counters (calls per API today, errcodes it
answered) and from the database, never from the test's clock.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from parley.channels.schemas import ChannelAccountCreate
from parley.channels.service import channel_account
from parley.channels.wechat.errors import next_beijing_midnight
from parley.contacts import profiles
from parley.contacts.sync import service as sync_service
from parley.delivery import service as delivery
from parley.kit.crypto import SecretBox
from parley.models import ChannelAccount, Contact, ContactIdentity, FollowerSync, IdentityKind
from tests.conftest import TEST_SECRET
from tests.fixtures.browser import ServerProcess, free_port, server_env

FOLLOWERS = int(os.environ.get("PARLEY_SYNC_TEST_FOLLOWERS", "50000"))


@pytest.fixture(scope="module")
def wechat_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A simulator of this module's own, so its counters hold only these tests' calls."""
    logs = tmp_path_factory.mktemp("wechat-sim")
    port = free_port()
    sim = ServerProcess(
        ["sandbox", "wechat", "--port", str(port)],
        server_env("sqlite+aiosqlite:///" + str(logs / "unused.db"), logs),
        logs / "sim.log",
        port,
    ).start(ready_path="/_sandbox/stats")
    try:
        yield sim.url
    finally:
        sim.stop()


class SimAccount:
    def __init__(self, sim_url: str, followers: int, **limits: Any) -> None:
        self.url = sim_url
        suffix = secrets.token_hex(8)
        self.app_id = f"wx{suffix}"
        self.credentials = {
            "app_id": self.app_id,
            "app_secret": f"secret-{suffix}",
            "token": f"tok{suffix}",
            "encoding_aes_key": secrets.token_hex(22)[:43],
            "encryption_mode": "plain",
            "original_id": f"gh_{suffix[:12]}",
        }
        httpx.post(f"{sim_url}/_sandbox/accounts", json=self.credentials, timeout=10).raise_for_status()
        httpx.post(
            f"{sim_url}/_sandbox/accounts/{self.app_id}/users", json={"count": followers}, timeout=120
        ).raise_for_status()
        if limits:
            httpx.post(
                f"{sim_url}/_sandbox/accounts/{self.app_id}/limits", json=limits, timeout=10
            ).raise_for_status()

    def usage(self) -> dict[str, int]:
        response = httpx.get(f"{self.url}/_sandbox/accounts/{self.app_id}", timeout=10)
        return dict(response.json()["usage_today"])

    def calls(self, api: str) -> list[dict[str, Any]]:
        response = httpx.get(
            f"{self.url}/_sandbox/calls", params={"app_id": self.app_id, "api": api}, timeout=10
        )
        return list(response.json()["calls"])


async def connect(session: AsyncSession, sim: SimAccount, **quotas: int) -> ChannelAccount:
    account = await channel_account.create(
        session,
        actor=None,
        box=SecretBox(TEST_SECRET),
        data=ChannelAccountCreate.model_validate(
            {"type": "wechat", "name": "Followers", "api_base_url": sim.url, "credentials": sim.credentials}
        ),
    )
    if quotas:
        await delivery.set_limits(session, account_id=account.id, daily_quotas=quotas)
    await session.commit()
    return account


async def state(session: AsyncSession, sync_id: Any) -> FollowerSync:
    await session.rollback()  # a fresh snapshot: on SQLite WAL a read transaction keeps seeing one
    sync = await session.scalar(
        select(FollowerSync).where(FollowerSync.id == sync_id).execution_options(populate_existing=True)
    )
    assert sync is not None
    return sync


async def wait_for(
    session: AsyncSession, sync_id: Any, check: Any, timeout_s: float, what: str
) -> FollowerSync:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        sync = await state(session, sync_id)
        if check(sync):
            return sync
        await asyncio.sleep(0.2)
    sync = await state(session, sync_id)
    raise AssertionError(
        f"{what}: not reached in time ({sync.status}, {sync.followers_seen} seen, {sync.profiles_fetched} profiles)"
    )


def worker(database_url: str, tmp_path: Path, name: str) -> ServerProcess:
    env = server_env(database_url, tmp_path, PARLEY_LOG_LEVEL="WARNING", PARLEY_CONTACTS_JOB_LEASE_S="3")
    return ServerProcess(["worker"], env, tmp_path / f"{name}.log").start(ready_path=None)


class TestCrashAndResume:
    @pytest.mark.timeout(1500)
    async def test_sigkill_mid_walk_then_resume_ends_with_every_follower_once_within_quota(
        self, backend: str, database_url: str, session: AsyncSession, wechat_sim: str, tmp_path: Path
    ) -> None:
        if backend != "sqlite":
            pytest.skip(
                "50,000 followers through real worker processes run on SQLite; paging and quotas on both below"
            )
        # The operator's quotas match what the platform console shows: the sync must never meet a 45009.
        quotas = {"user_get": 10, "user_info": FOLLOWERS // 100 + 20}
        # Slow list pages (the platform's are slow too) so that the kill lands between two pages.
        sim = SimAccount(
            wechat_sim,
            FOLLOWERS,
            daily_quotas=quotas,
            faults=[{"api": "user_get", "delay_s": 1.5, "count": 3}],
        )
        account = await connect(session, sim, **quotas)
        account_id = account.id
        sync = await sync_service.start_sync(session, account, actor_id=None)
        sync_id = sync.id
        await session.commit()

        first = worker(database_url, tmp_path, "worker-1")
        try:
            killed_at = await wait_for(
                session, sync_id, lambda s: s.followers_seen >= 10_000, 120, "first page stored"
            )
        finally:
            first.kill()  # SIGKILL: the lease stays taken, the page in flight is lost
        assert killed_at.followers_seen < FOLLOWERS
        assert killed_at.next_openid, "the cursor of the last stored page was saved"

        second = worker(database_url, tmp_path, "worker-2")
        try:
            done = await wait_for(session, sync_id, lambda s: s.status == "done", 900, "sync done")
            figures = {
                "seen": (done.followers_seen, done.total_followers, done.contacts_created),
                "profiles": (done.profiles_fetched, done.profiles_total),
                "pages": done.pages,
            }
        finally:
            second.stop()

        await session.rollback()
        assert (
            await session.scalar(
                select(func.count()).select_from(Contact).where(Contact.merged_into_id.is_(None))
            )
            == FOLLOWERS
        )
        openids = (
            select(func.count())
            .select_from(ContactIdentity)
            .where(
                ContactIdentity.kind == IdentityKind.wechat_openid, ContactIdentity.account_id == account_id
            )
        )
        assert await session.scalar(openids) == FOLLOWERS
        assert await session.scalar(openids.where(ContactIdentity.profile_synced_at.is_(None))) == 0
        assert figures["seen"] == (FOLLOWERS,) * 3
        assert figures["profiles"] == (FOLLOWERS, FOLLOWERS)

        usage = sim.usage()
        assert usage["user_get"] <= quotas["user_get"]
        assert usage["user_info"] <= quotas["user_info"]
        errors = httpx.get(f"{wechat_sim}/_sandbox/stats", timeout=10).json()["errors"]
        assert "45009" not in errors, "the platform never had to refuse a call for quota"
        # Resumed from the saved cursor, not from the start: every page was stored exactly once
        # (a walk from the start would have counted the first pages' followers again).
        assert figures["pages"] == FOLLOWERS // 10_000 + 1
        assert usage["user_get"] <= figures["pages"] + 1, (
            "at most the page in flight at the kill was fetched twice"
        )


class TestQuota:
    async def test_profiles_wait_for_our_quota_count_instead_of_meeting_a_45009(
        self, app: Any, session: AsyncSession, wechat_sim: str
    ) -> None:
        sim = SimAccount(wechat_sim, 250)
        account = await connect(session, sim, user_info=2)
        sync = await sync_service.start_sync(session, account, actor_id=None)
        sync_id = sync.id
        await session.commit()
        ctx = app.state.ctx
        claim = await sync_service.claim_sync(ctx)
        assert claim is not None
        await sync_service.run_sync(ctx, claim)
        walked = await state(session, sync_id)
        assert (walked.status, walked.followers_seen, walked.profiles_total) == ("profiles", 250, 250)
        assert sim.usage()["user_get"] == 2  # one page and the empty one that ends the list

        for _ in range(5):
            await profiles.sync_round(ctx)
        assert sim.usage().get("user_info") == 2
        assert "45009" not in httpx.get(f"{wechat_sim}/_sandbox/stats", timeout=10).json()["errors"]
        # The sync looks at the profile fetcher's progress every few seconds; look now.
        async with ctx.sessionmaker() as db:
            await db.execute(update(FollowerSync).values(due_at=None))
            await db.commit()
        claim = await sync_service.claim_sync(ctx)
        assert claim is not None
        await sync_service.run_sync(ctx, claim)
        waiting = await state(session, sync_id)
        assert (waiting.status, waiting.profiles_fetched) == ("profiles", 200)

    async def test_a_platform_45009_defers_the_walk_to_beijing_midnight(
        self, app: Any, session: AsyncSession, wechat_sim: str
    ) -> None:
        # The platform's quota is lower than what the operator told Parley: the platform says 45009.
        sim = SimAccount(wechat_sim, 10_500, daily_quotas={"user_get": 1})
        account = await connect(session, sim)
        sync = await sync_service.start_sync(session, account, actor_id=None)
        sync_id = sync.id
        await session.commit()
        ctx = app.state.ctx
        claim = await sync_service.claim_sync(ctx)
        assert claim is not None
        await sync_service.run_sync(ctx, claim)
        deferred = await state(session, sync_id)
        assert (deferred.status, deferred.followers_seen) == ("waiting_quota", 10_000)
        assert deferred.due_at is not None
        assert abs((deferred.due_at - next_beijing_midnight()).total_seconds()) < 5
        assert await sync_service.claim_sync(ctx) is None, "nothing to do until the reset"
        # Our counter is marked used up too, so the next attempt today would not even call.
        assert await sync_service.quota.take(ctx, account, "user_get") is not None
        assert len([c for c in sim.calls("user_get") if c["errcode"] == 45009]) == 1

    async def test_one_sync_per_account_at_a_time(
        self, client: Any, admin_headers: Any, session: AsyncSession, wechat_sim: str
    ) -> None:
        sim = SimAccount(wechat_sim, 1)
        account = await connect(session, sim)
        first = await client.post(
            "/api/v1/contacts/sync", json={"account_id": str(account.id)}, headers=admin_headers
        )
        assert first.status_code == 201 and first.json()["status"] == "queued"
        second = await client.post(
            "/api/v1/contacts/sync", json={"account_id": str(account.id)}, headers=admin_headers
        )
        assert second.status_code == 409
