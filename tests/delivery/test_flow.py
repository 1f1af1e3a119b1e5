"""Flow control on both shared backends: the database (SQLite and PostgreSQL) and Redis.

Each scenario runs against real state: a migrated database, or the Redis at
PARLEY_TEST_REDIS_URL (skipped when unset). Times are passed in, so the
arithmetic is checked exactly, without waiting.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import uuid
from collections.abc import AsyncIterator

import pytest

from parley.context import Context
from parley.db import session_scope
from parley.delivery.flow import DatabaseFlow, FlowBackend, Rate, RedisFlow, quota_day
from parley.models import Priority

REDIS_URL = os.environ.get("PARLEY_TEST_REDIS_URL", "")


@pytest.fixture(params=["database", "redis"])
async def flow(request: pytest.FixtureRequest) -> AsyncIterator[FlowBackend]:
    if request.param == "database":
        yield DatabaseFlow()
        return
    if not REDIS_URL:
        pytest.skip("PARLEY_TEST_REDIS_URL is not set")
    backend = RedisFlow(REDIS_URL, prefix=f"parley-test:{uuid.uuid4().hex}:")
    try:
        yield backend
    finally:
        keys = [k async for k in backend.redis.scan_iter(match=f"{backend.prefix}*")]
        if keys:
            await backend.redis.delete(*keys)
        await backend.close()


async def _take(ctx: Context, flow: FlowBackend, key: str, n: int, rate: Rate, now: float, priority: int = 3):
    async with session_scope(ctx.sessionmaker) as session:
        return await flow.take_tokens(session, key, n=n, rate=rate, priority=priority, now=now)


class TestTokenBucket:
    async def test_burst_then_deferred_at_the_rate(self, ctx: Context, flow: FlowBackend) -> None:
        rate = Rate.of(100, burst=10)
        grant = await _take(ctx, flow, "acct", 30, rate, now=1000.0)
        assert grant.granted == 10
        # The other twenty are due one every 10 ms, starting when the next token exists.
        assert grant.deferred[0] == pytest.approx(1000.01)
        assert grant.deferred[-1] == pytest.approx(1000.01 + 19 * 0.01)
        # A second batch of the same priority queues behind the first deferral line.
        later = await _take(ctx, flow, "acct", 5, rate, now=1000.0)
        assert later.granted == 0
        assert later.deferred[0] == pytest.approx(1000.21)

    async def test_agent_reply_is_not_queued_behind_bulk(self, ctx: Context, flow: FlowBackend) -> None:
        rate = Rate.of(10, burst=1)
        bulk = await _take(ctx, flow, "acct", 500, rate, now=0.0)  # fifty seconds of deferred bulk
        assert bulk.deferred[-1] == pytest.approx(49.9)
        reply = await _take(ctx, flow, "acct", 1, rate, now=0.0, priority=Priority.agent_reply)
        assert (reply.granted, reply.deferred) == (1, [])  # borrowed: goes now
        # Borrowing is capped at one burst; the next reply waits for the debt to be repaid,
        # still not behind the broadcast's fifty seconds.
        second = await _take(ctx, flow, "acct", 1, rate, now=0.0, priority=Priority.agent_reply)
        assert second.deferred == [pytest.approx(0.2)]

    async def test_refill_is_capped_at_the_burst(self, ctx: Context, flow: FlowBackend) -> None:
        rate = Rate.of(100, burst=5)
        await _take(ctx, flow, "acct", 5, rate, now=0.0)
        grant = await _take(ctx, flow, "acct", 50, rate, now=60.0)  # a minute idle
        assert grant.granted == 5

    async def test_concurrent_takers_share_one_bucket(self, ctx: Context, flow: FlowBackend) -> None:
        rate = Rate.of(50, burst=50)
        grants = await asyncio.gather(*(_take(ctx, flow, "shared", 10, rate, now=500.0) for _ in range(10)))
        assert sum(g.granted for g in grants) == 50  # never more than the bucket held
        deferred = sorted(t for g in grants for t in g.deferred)
        # The fifty that could not go are spread at the rate, none sharing a slot.
        assert len(deferred) == 50
        assert all(b - a == pytest.approx(0.02) for a, b in itertools.pairwise(deferred))

    async def test_unlimited_grants_everything(self, ctx: Context, flow: FlowBackend) -> None:
        grant = await _take(ctx, flow, "acct", 10_000, Rate.of(0), now=0.0)
        assert (grant.granted, grant.deferred) == (10_000, [])


class TestDailyQuota:
    async def test_quota_is_shared_and_exhaustible(self, ctx: Context, flow: FlowBackend) -> None:
        account = uuid.uuid4()

        async def take(n: int) -> int:
            async with session_scope(ctx.sessionmaker) as session:
                return await flow.take_quota(session, account, "custom_send", "2026-01-01", n=n, limit=100)

        assert sum(await asyncio.gather(*(take(15) for _ in range(10)))) == 100
        assert await take(1) == 0
        async with session_scope(ctx.sessionmaker) as session:
            assert await flow.quota_used(session, account, "custom_send", "2026-01-01") == 100
            # A new quota day starts from zero.
            assert await flow.take_quota(session, account, "custom_send", "2026-01-02", n=5, limit=100) == 5
            await flow.exhaust_quota(session, account, "custom_send", "2026-01-02", limit=100)
            assert await flow.take_quota(session, account, "custom_send", "2026-01-02", n=1, limit=100) == 0

    def test_wechat_days_end_at_midnight_beijing(self) -> None:
        from datetime import UTC, datetime

        day, reset = quota_day("wechat", datetime(2026, 3, 1, 15, 59, tzinfo=UTC))  # 23:59 in Beijing
        assert (day, reset) == ("2026-03-01", datetime(2026, 3, 1, 16, 0, tzinfo=UTC))
        day, reset = quota_day("whatsapp", datetime(2026, 3, 1, 15, 59, tzinfo=UTC))
        assert (day, reset) == ("2026-03-01", datetime(2026, 3, 2, 0, 0, tzinfo=UTC))
