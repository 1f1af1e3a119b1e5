"""The delivery worker: claim due jobs, apply flow control, send through the adapter, record the outcome.

One batch is three steps, and no transaction is open while the platform is
being called:

1. **Claim** (one write transaction): lease up to ``batch_size`` due jobs in
   (priority, due_at) order; take tokens and quota for them; give back, with
   new due times, those the bucket or a quota can't serve now.
2. **Send** the rest concurrently through the account's adapter, each with its
   message's idempotency key.
3. **Record** (one write transaction): sent, rescheduled with backoff,
   dead-lettered, or failed with the platform's reason.

A worker killed between 1 and 3 leaves its jobs leased; they become due again
when the lease runs out and another worker sends them with the same
idempotency key (docs/decisions/0002-delivery.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import ssl
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

import aiohttp
import httpx
import structlog
from httpx_aiohttp import AiohttpTransport
from pydantic import ValidationError
from sqlalchemy import select

from parley.channels.base import (
    ChannelAdapter,
    ChannelError,
    ChannelPermanentError,
    ChannelQuotaExceededError,
    ChannelRetriableError,
    ChannelWindowClosedError,
    OutboundMessage,
    SendResult,
)
from parley.channels.runtime import runtime
from parley.channels.service import channel_account
from parley.context import Context
from parley.db import session_scope
from parley.delivery import metrics
from parley.delivery.clock import Clock, SystemClock
from parley.delivery.flow import FlowBackend, build_flow, quota_day
from parley.delivery.repository import ClaimedJob, Failure, Release, Retry, Sent, outbox
from parley.delivery.retry import RetryPolicy
from parley.delivery.service import AccountLimits, effective_limits, register_wakeup, unregister_wakeup
from parley.models import ChannelAccount, DeliveryLimit, Message, MessageStatus, OutboxJobStatus, Priority
from parley.realtime.service import publish_on_commit

log = structlog.get_logger()

_FLOW_KEY = "delivery.flow"
_ACCOUNT_TTL_S = 5.0
_PAUSED_ACCOUNT_DELAY = timedelta(seconds=60)
EXPRESS_LANES = 4
# Batches a loop has in hand at once: one being sent while the next is claimed.
PIPELINE_DEPTH = 2


def shared_flow(ctx: Context) -> FlowBackend:
    """The process's flow backend (one Redis connection pool per process)."""
    flow = ctx.extras.get(_FLOW_KEY)
    if flow is None:
        flow = build_flow(ctx.settings.flow_backend.value, ctx.settings.redis_url)
        ctx.extras[_FLOW_KEY] = flow
        ctx.on_close.append(flow.close)
    return flow


@runtime_checkable
class SessionSender(Protocol):
    """An adapter that can send through the engine's aiohttp session (see ``DeliveryEngine``)."""

    def use_session(self, session: aiohttp.ClientSession) -> None: ...


@dataclass
class _Account:
    account: ChannelAccount
    limits: AccountLimits
    adapters: list[ChannelAdapter]  # one shared by every lane, or one per lane (its own httpx client)
    expires: float

    def adapter(self, lane: int) -> ChannelAdapter:
        return self.adapters[lane] if len(self.adapters) > 1 else self.adapters[0]


@dataclass(frozen=True)
class _Send:
    job: ClaimedJob
    message: OutboundMessage | None  # None: the stored content is not a valid message
    account: _Account


@dataclass(frozen=True)
class _Batch:
    token: str
    claimed: int
    sends: list[_Send]


class DeliveryEngine:
    """Runs delivery batches for one process; several loops may share one engine."""

    def __init__(
        self,
        ctx: Context,
        *,
        clock: Clock | None = None,
        flow: FlowBackend | None = None,
        policy: RetryPolicy | None = None,
        worker_id: str | None = None,
    ) -> None:
        settings = ctx.settings
        self.ctx = ctx
        self.clock = clock or SystemClock()
        self.flow = flow or shared_flow(ctx)
        self.policy = policy or RetryPolicy(max_attempts=settings.delivery_max_attempts)
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}"
        self.lease = timedelta(seconds=settings.delivery_lease_s)
        self.batch_size = settings.delivery_batch_size
        self.poll_s = settings.delivery_poll_s
        # Concurrent sends are bounded by "lanes": ``delivery_concurrency`` for everything and a few
        # reserved for agent replies and automated messages, so that a reply never queues for a lane
        # behind a bulk batch's sends.
        self._lanes: asyncio.Queue[int] = asyncio.Queue()
        self._express_lanes: asyncio.Queue[int] = asyncio.Queue()
        self._lane_count = settings.delivery_concurrency + EXPRESS_LANES
        for lane in range(self._lane_count):
            (self._lanes if lane < settings.delivery_concurrency else self._express_lanes).put_nowait(lane)
        # Adapters that can send through an aiohttp session (WhatsApp) share one, pooled by aiohttp's
        # connector: per request it costs well under half the client CPU of httpx, whichever transport
        # httpx runs on, and client CPU is most of what a worker spends per message
        # (docs/decisions/0002-delivery.md). Other adapters get one small httpx client per lane, since a
        # single httpx pool serialises on its own bookkeeping with dozens of requests waiting on it.
        self._session: aiohttp.ClientSession | None = None
        self._http: list[httpx.AsyncClient] = []
        self._tls: ssl.SSLContext | None = None
        ctx.on_close.append(self.close)
        self._accounts: dict[uuid.UUID, _Account] = {}

    def _tls_context(self) -> ssl.SSLContext:
        # One TLS context for every client: loading the CA bundle costs ~70 ms each time.
        if self._tls is None:
            self._tls = httpx.create_ssl_context()
        return self._tls

    def _aiohttp_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self._lane_count, limit_per_host=self._lane_count, ssl=self._tls_context()
                ),
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=20.0, connect=5.0),
            )
        return self._session

    def _lane_clients(self) -> list[httpx.AsyncClient]:
        if not self._http:
            self._http = [
                httpx.AsyncClient(
                    timeout=httpx.Timeout(20.0, connect=5.0),
                    transport=AiohttpTransport(
                        verify=self._tls_context(),
                        limits=httpx.Limits(max_connections=2, max_keepalive_connections=2),
                    ),
                )
                for _ in range(self._lane_count)
            ]
        return self._http

    async def close(self) -> None:
        for client in self._http:
            await client.aclose()
        if self._session is not None:
            await self._session.close()

    # --- loop ---------------------------------------------------------------------------------

    async def run(
        self, stop: asyncio.Event, *, max_priority: int | None = None, batch_size: int | None = None
    ) -> None:
        """Processes batches until ``stop``; between empty polls it waits for a local wake-up or the poll interval.

        Batches overlap: the next one is claimed while the sends of up to ``PIPELINE_DEPTH`` earlier
        ones are in flight, so neither the platform nor the worker sits idle while the other side of a
        claim → send → record cycle runs. Each batch keeps its own claim token and lease, so a crash
        leaves at most ``PIPELINE_DEPTH`` batches in doubt, all resent with their idempotency keys.
        """
        wake = asyncio.Event()
        register_wakeup(wake)
        in_flight: set[asyncio.Task[None]] = set()
        try:
            while not stop.is_set():
                try:
                    batch = await self._claim(max_priority=max_priority, batch_size=batch_size)
                except Exception:
                    log.exception("delivery.batch_failed", worker=self.worker_id)
                    batch = None
                if batch is not None:
                    task = asyncio.create_task(self._deliver_logged(batch))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                    if len(in_flight) >= PIPELINE_DEPTH:
                        await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                    continue
                if in_flight:
                    # Nothing due now; a batch finishing is the likeliest moment for more to be.
                    await asyncio.wait(in_flight, timeout=self.poll_s, return_when=asyncio.FIRST_COMPLETED)
                    continue
                wake.clear()
                stopper = asyncio.ensure_future(stop.wait())
                waker = asyncio.ensure_future(wake.wait())
                await asyncio.wait({stopper, waker}, timeout=self.poll_s, return_when=asyncio.FIRST_COMPLETED)
                for pending in (stopper, waker):
                    pending.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await pending
        finally:
            # Batches in hand are finished and recorded, not abandoned to their leases.
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)
            unregister_wakeup(wake)

    async def run_until_idle(self, *, max_batches: int = 1_000_000) -> int:
        """Processes batches until nothing is due (tests, the benchmark); returns the number claimed."""
        total = 0
        for _ in range(max_batches):
            claimed = await self.run_once()
            if not claimed:
                break
            total += claimed
        return total

    async def run_once(self, *, max_priority: int | None = None, batch_size: int | None = None) -> int:
        """One claim → send → record cycle; returns how many jobs were claimed."""
        batch = await self._claim(max_priority=max_priority, batch_size=batch_size)
        if batch is None:
            return 0
        await self._deliver(batch)
        return batch.claimed

    async def _claim(self, *, max_priority: int | None, batch_size: int | None) -> _Batch | None:
        """Claims and admits one batch (one write transaction); None when nothing was due."""
        maker = self.ctx.sessionmaker
        now = self.clock.now()
        async with session_scope(maker, write=False) as session:
            if not await outbox.any_due(session, now=now, max_priority=max_priority):
                return None
        token = secrets.token_hex(8)
        async with session_scope(maker) as session:
            now = self.clock.now()
            claimed = await outbox.claim(
                session,
                now=now,
                lease_until=now + self.lease,
                limit=batch_size or self.batch_size,
                token=token,
                worker=self.worker_id,
                max_priority=max_priority,
            )
            if not claimed:
                return None
            sends = await self._admit(session, claimed, token=token, now=now)
        return _Batch(token, len(claimed), sends)

    async def _deliver(self, batch: _Batch) -> None:
        outcomes = await asyncio.gather(*(self._send(item) for item in batch.sends))
        await self._record(batch.sends, outcomes, token=batch.token)

    async def _deliver_logged(self, batch: _Batch) -> None:
        try:
            await self._deliver(batch)
        except Exception:
            # The batch's jobs stay leased and are sent again, with the same keys, when the lease ends.
            log.exception("delivery.batch_failed", worker=self.worker_id)

    # --- step 1: admission ------------------------------------------------------------------

    async def _account(self, session: Any, account_id: uuid.UUID) -> _Account | None:
        cached = self._accounts.get(account_id)
        if cached is not None and cached.expires > time.monotonic():
            return cached
        account = await session.get(ChannelAccount, account_id)
        if account is None:
            return None
        limits = effective_limits(account.type, await session.get(DeliveryLimit, account_id))
        box, shared = self.ctx.secret_box, runtime(self.ctx)
        adapter = channel_account.adapter(account, box=box, http=shared.http, tokens=shared.tokens)
        adapters: list[ChannelAdapter]
        if isinstance(adapter, SessionSender):
            adapter.use_session(self._aiohttp_session())
            adapters = [adapter]
        else:
            adapters = [
                channel_account.adapter(account, box=box, http=http, tokens=shared.tokens)
                for http in self._lane_clients()
            ]
        entry = _Account(account, limits, adapters, time.monotonic() + _ACCOUNT_TTL_S)
        self._accounts[account_id] = entry
        return entry

    async def _admit(
        self, session: Any, claimed: list[ClaimedJob], *, token: str, now: datetime
    ) -> list[_Send]:
        rows = await outbox.message_rows(session, [job.message_id for job in claimed])
        done_already = [
            job.id
            for job in claimed
            if job.message_id not in rows or rows[job.message_id].status != MessageStatus.queued
        ]
        await outbox.finish_without_send(session, done_already, now=now)
        live = [job for job in claimed if job.id not in set(done_already)]

        releases: list[Release] = []
        admitted: list[tuple[ClaimedJob, _Account]] = []
        groups: dict[tuple[str, int], list[ClaimedJob]] = defaultdict(list)
        accounts: dict[uuid.UUID, _Account] = {}
        for job in live:
            entry = await self._account(session, job.account_id)
            if entry is None or not entry.account.is_active:
                # A paused account keeps its queue; nothing is lost or failed.
                releases.append(Release(job.id, now + _PAUSED_ACCOUNT_DELAY))
                continue
            accounts[job.account_id] = entry
            groups[(job.flow_key, job.priority)].append(job)

        epoch = now.timestamp()
        # Sorted so two PostgreSQL workers lock buckets in the same order (no deadlock).
        for (key, priority), group in sorted(groups.items()):
            rate = accounts[group[0].account_id].limits.rate
            grant = await self.flow.take_tokens(
                session, key, n=len(group), rate=rate, priority=priority, now=epoch
            )
            admitted.extend((job, accounts[job.account_id]) for job in group[: grant.granted])
            for job, due in zip(group[grant.granted :], grant.deferred, strict=True):
                releases.append(Release(job.id, datetime.fromtimestamp(due, UTC)))
            if grant.deferred:
                metrics.DEFERRED.labels(str(group[0].account_id), "rate").inc(len(grant.deferred))

        # Daily quotas, after the bucket: a send denied here gives its token back.
        by_quota: dict[tuple[uuid.UUID, str], list[tuple[ClaimedJob, _Account]]] = defaultdict(list)
        sends: list[_Send] = []
        for job, entry in admitted:
            if job.quota_api and job.quota_api in entry.limits.daily_quotas:
                by_quota[(job.account_id, job.quota_api)].append((job, entry))
            else:
                sends.append(_Send(job, self._message(rows[job.message_id]), entry))
        for (account_id, api), items in sorted(by_quota.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
            entry = items[0][1]
            day, reset_at = quota_day(entry.account.type, now)
            granted = await self.flow.take_quota(
                session, account_id, api, day, n=len(items), limit=entry.limits.daily_quotas[api]
            )
            sends.extend(_Send(job, self._message(rows[job.message_id]), e) for job, e in items[:granted])
            refused = items[granted:]
            releases.extend(Release(job.id, reset_at) for job, _ in refused)
            refunds: dict[str, int] = defaultdict(int)
            for job, _ in refused:
                refunds[job.flow_key] += 1
            for key, n in sorted(refunds.items()):
                await self.flow.refund_tokens(session, key, n=n, rate=entry.limits.rate)
            if refused:
                metrics.DEFERRED.labels(str(account_id), "quota").inc(len(refused))
        await outbox.release(session, releases, token=token, now=now)
        return sends

    @staticmethod
    def _message(row: Any) -> OutboundMessage | None:
        try:
            return OutboundMessage.model_validate({**row.content, "idempotency_key": row.idempotency_key})
        except ValidationError:
            return None

    # --- step 2: send -----------------------------------------------------------------------

    async def _send(self, item: _Send) -> SendResult | BaseException:
        if item.message is None:
            return ChannelPermanentError("stored content is not a valid outbound message", code=None)
        lanes = self._express_lanes if item.job.priority <= Priority.automated else self._lanes
        lane = await lanes.get()
        started = time.perf_counter()
        try:
            return await item.account.adapter(lane).send(item.message)
        except Exception as exc:
            return exc
        finally:
            lanes.put_nowait(lane)
            metrics.SEND_SECONDS.observe(time.perf_counter() - started)

    # --- step 3: record ---------------------------------------------------------------------

    async def _announce(self, session: Any, sent: list[Sent], failures: list[Failure]) -> None:
        """Tells agents' consoles about sends and failures of conversation messages (after commit)."""
        outcomes: dict[int, tuple[str, str | None]] = {s.message_id: (MessageStatus.sent, None) for s in sent}
        outcomes.update({f.message_id: (MessageStatus.failed, f.reason) for f in failures})
        if not outcomes:
            return
        rows = await session.execute(
            select(Message.id, Message.conversation_id).where(
                Message.id.in_(outcomes), Message.conversation_id.is_not(None)
            )
        )
        for message_id, conversation_id in rows:
            status, reason = outcomes[message_id]
            publish_on_commit(
                session,
                self.ctx,
                {
                    "type": "message.status",
                    "message_id": message_id,
                    "conversation_id": str(conversation_id),
                    "status": status,
                    "error_reason": reason,
                    "audience": {"permission": "conversations.read"},
                },
            )

    async def _record(
        self, sends: list[_Send], outcomes: list[SendResult | BaseException], *, token: str
    ) -> None:
        if not sends:
            return
        now = self.clock.now()
        sent: list[Sent] = []
        retries: list[Retry] = []
        failures: list[Failure] = []
        quota_waits: list[tuple[_Send, ChannelQuotaExceededError]] = []
        # Counted per account once per batch: a label lookup per message costs more than the count.
        sent_per_account: dict[uuid.UUID, int] = defaultdict(int)
        for item, outcome in zip(sends, outcomes, strict=True):
            job = item.job
            if isinstance(outcome, SendResult):
                sent.append(Sent(job.id, job.message_id, outcome.platform_message_id))
                sent_per_account[job.account_id] += 1
                continue
            account = str(job.account_id)
            if isinstance(outcome, ChannelQuotaExceededError):
                quota_waits.append((item, outcome))
            elif isinstance(outcome, ChannelRetriableError) or not isinstance(outcome, ChannelError):
                # Anything unexpected (a bug, an unwrapped network error) is retried, never lost.
                code = _code(outcome, "retryable")
                attempts = job.attempts + 1
                if self.policy.exhausted(attempts):
                    failures.append(
                        Failure(job.id, job.message_id, OutboxJobStatus.dead, code, _reason(outcome))
                    )
                    metrics.FAILED.labels(account, code).inc()
                    continue
                retry_after = outcome.retry_after_s if isinstance(outcome, ChannelRetriableError) else None
                due = now + timedelta(seconds=self.policy.delay_s(attempts, retry_after))
                retries.append(Retry(job.id, due, code, _reason(outcome)))
                metrics.RETRIED.labels(account, code).inc()
                if not isinstance(outcome, ChannelError):
                    log.warning("delivery.unexpected_error", job_id=job.id, error=repr(outcome))
            else:
                default = "window_closed" if isinstance(outcome, ChannelWindowClosedError) else "permanent"
                code = _code(outcome, default)
                failures.append(
                    Failure(job.id, job.message_id, OutboxJobStatus.failed, code, _reason(outcome))
                )
                metrics.FAILED.labels(account, code).inc()
        for account_id, n in sent_per_account.items():
            metrics.SENT.labels(str(account_id)).inc(n)
        async with session_scope(self.ctx.sessionmaker) as session:
            await outbox.finish_sent(session, sent, now=now)
            await outbox.reschedule(session, retries, token=token, now=now)
            await outbox.fail(session, failures, token=token, now=now)
            await self._announce(session, sent, failures)
            releases: list[Release] = []
            for item, error in quota_waits:
                # The platform says the quota is gone: believe it, so the other jobs stop trying too.
                day, reset_at = quota_day(item.account.account.type, now)
                api = item.job.quota_api
                if api and api in item.account.limits.daily_quotas:
                    await self.flow.exhaust_quota(
                        session, item.job.account_id, api, day, limit=item.account.limits.daily_quotas[api]
                    )
                releases.append(Release(item.job.id, error.reset_at or reset_at))
                metrics.DEFERRED.labels(str(item.job.account_id), "quota").inc()
            await outbox.release(session, releases, token=token, now=now)


def _code(error: BaseException, default: str) -> str:
    code = getattr(error, "code", None)
    return str(code)[:64] if code is not None else default


def _reason(error: BaseException) -> str:
    if isinstance(error, ChannelError):
        return error.message
    return f"{type(error).__name__}: {error}"
