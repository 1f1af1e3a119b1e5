"""Flow control shared by every process: token buckets and daily quotas.

Two backends hold the state, so that two workers together still respect one
account's limits: the database (rows in ``flow_buckets`` and
``flow_quota_usage``, updated inside the claim transaction) and Redis (one Lua
script per operation, atomic on the server). Both run the same arithmetic.

A bucket never makes anyone wait. When it has fewer tokens than sends, the
extra sends get *due times*: the moments their tokens will exist, spread at
the bucket's rate after the sends of the same priority already deferred. The
worker writes those back as the jobs' ``due_at`` and moves on (STYLE.md §3:
never sleep holding a claimed job). Agent replies are never queued behind a
deferral line: they get the very next token (docs/decisions/0002-delivery.md).
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from parley.channels.base import ChannelType, OutboundMessage, OutboundType
from parley.models import FlowBucket, FlowQuotaUsage, Priority

# WeChat's quotas reset at midnight Beijing time (PROTOCOLS.md 1.7.12); we count
# days the same way so our counter and the platform's agree.
BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")
QUOTA_ZONES: dict[str, timezone] = {ChannelType.wechat.value: BEIJING}

# Without a configured burst a bucket may send a tenth of a second's worth at once:
# small enough that a platform measuring per-second windows never sees more than its rate.
DEFAULT_BURST_S = 0.1


@dataclass(frozen=True)
class Rate:
    """Sends per second and how many may go at once; ``per_s <= 0`` means unlimited."""

    per_s: float
    burst: float

    @property
    def unlimited(self) -> bool:
        return self.per_s <= 0

    @classmethod
    def of(cls, per_s: float, burst: float | None = None) -> Rate:
        if per_s <= 0:
            return cls(0.0, 0.0)
        return cls(per_s, max(1.0, burst if burst else per_s * DEFAULT_BURST_S))


@dataclass(frozen=True)
class TokenGrant:
    granted: int  # the first ``granted`` sends may go now
    deferred: list[float]  # Unix times at which the others' tokens will be due, in order


def quota_api(channel_type: str, message: OutboundMessage) -> str:
    """The daily-quota bucket a send counts against (names as in Capabilities.daily_quotas)."""
    if channel_type == ChannelType.wechat.value:
        return "template_send" if message.type is OutboundType.template else "custom_send"
    return "messages"


def flow_key(account_id: uuid.UUID, channel_type: str, sender: str | None) -> str:
    """One bucket per account; per sending number on WhatsApp (80 msg/s each, PROTOCOLS.md 2.7)."""
    if channel_type == ChannelType.whatsapp.value and sender:
        return f"{account_id}:{sender}"
    return str(account_id)


def quota_day(channel_type: str, now: datetime) -> tuple[str, datetime]:
    """The quota day ``now`` falls in (its name) and when it ends (UTC)."""
    zone = QUOTA_ZONES.get(channel_type, UTC)
    local = now.astimezone(zone)
    midnight = datetime(local.year, local.month, local.day, tzinfo=zone) + timedelta(days=1)
    return local.date().isoformat(), midnight.astimezone(UTC)


def take_arithmetic(
    *,
    tokens: float | None,
    updated_at: float | None,
    deferred_until: float | None,
    n: int,
    rate: Rate,
    priority: int,
    now: float,
) -> tuple[int, float, float, float | None]:
    """The bucket step: returns (granted, first deferred time, tokens left, new deferred_until).

    ``tokens`` may be None for a new bucket, which starts full.
    """
    level = rate.burst if tokens is None else tokens
    if updated_at is not None:
        level = min(rate.burst, level + max(0.0, now - updated_at) * rate.per_s)
    # Agent replies may borrow up to one burst ahead (the bucket goes into debt and
    # the next sends wait for it): otherwise a reply and a broadcast race for each
    # token as it appears, and a busy broadcast can win that race for seconds.
    floor_level = -rate.burst if priority == Priority.agent_reply else 0.0
    granted = max(0, min(n, math.floor(level - floor_level + 1e-9)))
    level -= granted
    rest = n - granted
    if rest <= 0:
        return granted, 0.0, level, deferred_until
    start = now + (1.0 - level) / rate.per_s
    if priority != Priority.agent_reply and deferred_until is not None and deferred_until > start:
        start = deferred_until
    return granted, start, level, start + rest / rate.per_s


class FlowBackend(Protocol):
    """Shared flow-control state. ``session`` is the claim transaction (used by the database backend)."""

    name: str

    async def take_tokens(
        self, session: AsyncSession, key: str, *, n: int, rate: Rate, priority: int, now: float
    ) -> TokenGrant: ...

    async def refund_tokens(self, session: AsyncSession, key: str, *, n: int, rate: Rate) -> None: ...

    async def take_quota(
        self, session: AsyncSession, account_id: uuid.UUID, api: str, day: str, *, n: int, limit: int
    ) -> int: ...

    async def exhaust_quota(
        self, session: AsyncSession, account_id: uuid.UUID, api: str, day: str, *, limit: int
    ) -> None: ...

    async def quota_used(self, session: AsyncSession, account_id: uuid.UUID, api: str, day: str) -> int: ...

    async def close(self) -> None: ...


def _grant(n: int, granted: int, start: float, rate: Rate) -> TokenGrant:
    return TokenGrant(granted, [start + i / rate.per_s for i in range(n - granted)])


class DatabaseFlow:
    """Flow state in the database, locked by the claim transaction (SQLite's write lock, or FOR UPDATE)."""

    name = "database"

    async def _bucket(self, session: AsyncSession, key: str) -> FlowBucket | None:
        stmt = (
            select(FlowBucket)
            .where(FlowBucket.key == key)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return (await session.scalars(stmt)).first()

    async def take_tokens(
        self, session: AsyncSession, key: str, *, n: int, rate: Rate, priority: int, now: float
    ) -> TokenGrant:
        if rate.unlimited:
            return TokenGrant(n, [])
        bucket = await self._bucket(session, key)
        if bucket is None:
            # A concurrent first claim on PostgreSQL may create it too: insert-or-ignore, then lock.
            await session.execute(
                _insert(session)(FlowBucket)
                .values(key=key, tokens=rate.burst, updated_at=now, deferred_until={})
                .on_conflict_do_nothing()
            )
            bucket = await self._bucket(session, key)
            assert bucket is not None  # noqa: S101 - just inserted under our lock
        deferred = dict(bucket.deferred_until or {})
        granted, start, level, until = take_arithmetic(
            tokens=bucket.tokens,
            updated_at=bucket.updated_at,
            deferred_until=deferred.get(str(priority)),
            n=n,
            rate=rate,
            priority=priority,
            now=now,
        )
        bucket.tokens = level
        bucket.updated_at = now
        if until is not None and priority != Priority.agent_reply:
            deferred[str(priority)] = until
            bucket.deferred_until = deferred
        await session.flush()
        return _grant(n, granted, start, rate)

    async def refund_tokens(self, session: AsyncSession, key: str, *, n: int, rate: Rate) -> None:
        if rate.unlimited or n <= 0:
            return
        bucket = await self._bucket(session, key)
        if bucket is not None:
            bucket.tokens = min(rate.burst, bucket.tokens + n)
            await session.flush()

    async def _usage(
        self, session: AsyncSession, account_id: uuid.UUID, api: str, day: str
    ) -> FlowQuotaUsage:
        stmt = (
            select(FlowQuotaUsage)
            .where(
                FlowQuotaUsage.account_id == account_id, FlowQuotaUsage.api == api, FlowQuotaUsage.day == day
            )
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        row = (await session.scalars(stmt)).first()
        if row is None:
            await session.execute(
                _insert(session)(FlowQuotaUsage)
                .values(account_id=account_id, api=api, day=day, used=0)
                .on_conflict_do_nothing()
            )
            row = (await session.scalars(stmt)).first()
            assert row is not None  # noqa: S101
        return row

    async def take_quota(
        self, session: AsyncSession, account_id: uuid.UUID, api: str, day: str, *, n: int, limit: int
    ) -> int:
        row = await self._usage(session, account_id, api, day)
        granted = max(0, min(n, limit - row.used))
        row.used += granted
        await session.flush()
        return granted

    async def exhaust_quota(
        self, session: AsyncSession, account_id: uuid.UUID, api: str, day: str, *, limit: int
    ) -> None:
        row = await self._usage(session, account_id, api, day)
        row.used = max(row.used, limit)
        await session.flush()

    async def quota_used(self, session: AsyncSession, account_id: uuid.UUID, api: str, day: str) -> int:
        used = await session.scalar(
            select(FlowQuotaUsage.used).where(
                FlowQuotaUsage.account_id == account_id, FlowQuotaUsage.api == api, FlowQuotaUsage.day == day
            )
        )
        return int(used or 0)

    async def close(self) -> None:
        return None


def _insert(session: AsyncSession) -> Any:
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


# KEYS[1] bucket hash. ARGV: n, rate, burst, now, priority, honour_deferral (1/0).
_TAKE_LUA = """
local h = redis.call('HMGET', KEYS[1], 'tokens', 'ts', 'd' .. ARGV[5])
local n = tonumber(ARGV[1]); local rate = tonumber(ARGV[2]); local burst = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
local level = tonumber(h[1]) or burst
local ts = tonumber(h[2])
if ts then level = math.min(burst, level + math.max(0, now - ts) * rate) end
local floor_level = 0
if ARGV[5] == '0' then floor_level = -burst end
local granted = math.max(0, math.min(n, math.floor(level - floor_level + 1e-9)))
level = level - granted
local rest = n - granted
local start = 0
if rest > 0 then
  start = now + (1 - level) / rate
  if ARGV[6] == '1' then
    local d = tonumber(h[3])
    if d and d > start then start = d end
    redis.call('HSET', KEYS[1], 'd' .. ARGV[5], tostring(start + rest / rate))
  end
end
redis.call('HSET', KEYS[1], 'tokens', tostring(level), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], 86400)
return {granted, tostring(start)}
"""

_REFUND_LUA = """
local level = tonumber(redis.call('HGET', KEYS[1], 'tokens'))
if level then
  redis.call('HSET', KEYS[1], 'tokens', tostring(math.min(tonumber(ARGV[2]), level + tonumber(ARGV[1]))))
end
return 1
"""

# KEYS[1] counter. ARGV: n, limit, ttl seconds.
_QUOTA_LUA = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local g = math.min(tonumber(ARGV[1]), math.max(0, tonumber(ARGV[2]) - used))
if g > 0 then redis.call('INCRBY', KEYS[1], g) end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return g
"""

_EXHAUST_LUA = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
"""

_QUOTA_TTL_S = 3 * 86400


class RedisFlow:
    """Flow state in Redis; every operation is one Lua script, so it is atomic across processes."""

    name = "redis"

    def __init__(self, url: str, *, prefix: str = "parley:flow:") -> None:
        import redis.asyncio as redis_asyncio

        self.redis: Any = redis_asyncio.from_url(url)
        self.prefix = prefix
        self._take = self.redis.register_script(_TAKE_LUA)
        self._refund = self.redis.register_script(_REFUND_LUA)
        self._quota = self.redis.register_script(_QUOTA_LUA)
        self._exhaust = self.redis.register_script(_EXHAUST_LUA)

    def _quota_key(self, account_id: uuid.UUID, api: str, day: str) -> str:
        return f"{self.prefix}quota:{account_id}:{api}:{day}"

    async def take_tokens(
        self, session: AsyncSession, key: str, *, n: int, rate: Rate, priority: int, now: float
    ) -> TokenGrant:
        if rate.unlimited:
            return TokenGrant(n, [])
        honour = "0" if priority == Priority.agent_reply else "1"
        granted, start = await self._take(
            keys=[f"{self.prefix}bucket:{key}"],
            args=[n, rate.per_s, rate.burst, repr(now), int(priority), honour],
        )
        return _grant(n, int(granted), float(start), rate)

    async def refund_tokens(self, session: AsyncSession, key: str, *, n: int, rate: Rate) -> None:
        if rate.unlimited or n <= 0:
            return
        await self._refund(keys=[f"{self.prefix}bucket:{key}"], args=[n, rate.burst])

    async def take_quota(
        self, session: AsyncSession, account_id: uuid.UUID, api: str, day: str, *, n: int, limit: int
    ) -> int:
        return int(
            await self._quota(keys=[self._quota_key(account_id, api, day)], args=[n, limit, _QUOTA_TTL_S])
        )

    async def exhaust_quota(
        self, session: AsyncSession, account_id: uuid.UUID, api: str, day: str, *, limit: int
    ) -> None:
        await self._exhaust(keys=[self._quota_key(account_id, api, day)], args=[limit, _QUOTA_TTL_S])

    async def quota_used(self, session: AsyncSession, account_id: uuid.UUID, api: str, day: str) -> int:
        value = await self.redis.get(self._quota_key(account_id, api, day))
        return int(value or 0)

    async def close(self) -> None:
        await self.redis.aclose()


def build_flow(backend: str, redis_url: str) -> FlowBackend:
    """The configured backend (settings.flow_backend)."""
    if backend == "redis":
        return RedisFlow(redis_url)
    return DatabaseFlow()
