"""The outbox end to end, in-process: enqueue → claim → flow control → send to the simulator → record."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.context import Context
from parley.db import session_scope
from parley.delivery import service as delivery
from parley.delivery.clock import ManualClock
from parley.delivery.engine import DeliveryEngine
from parley.delivery.flow import quota_day
from parley.delivery.retry import RetryPolicy
from parley.models import Message, MessageStatus, OutboxJob, OutboxJobStatus, Priority
from tests.delivery.support import create_parley_account, register_sim_account, template_to, text_to


async def _statuses(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(select(Message.status, func.count()).group_by(Message.status))
    return {str(status): int(count) for status, count in rows.all()}


class TestEnqueue:
    async def test_message_and_job_commit_together(self, ctx: Context, whatsapp_sim: str) -> None:
        sim = register_sim_account(whatsapp_sim, users=1)
        async with session_scope(ctx.sessionmaker) as session:
            account = await create_parley_account(session, sim)
        async with session_scope(ctx.sessionmaker) as session:
            message = await delivery.enqueue(
                session, account=account, message=template_to(sim.users[0]), priority=Priority.notification
            )

        async def enqueue_then_fail() -> None:
            async with session_scope(ctx.sessionmaker) as session:
                await delivery.enqueue(session, account=account, message=template_to(sim.users[0]))
                raise RuntimeError("the caller's transaction fails")

        with pytest.raises(RuntimeError):
            await enqueue_then_fail()
        async with session_scope(ctx.sessionmaker, write=False) as session:
            jobs = list((await session.scalars(select(OutboxJob))).all())
            assert [j.message_id for j in jobs] == [message.id]
            assert jobs[0].priority == Priority.notification
            assert jobs[0].flow_key == f"{account.id}:{sim.phone_number_id}"
            assert await _statuses(session) == {"queued": 1}


class TestDelivery:
    async def test_delivers_every_message_once(self, ctx: Context, whatsapp_sim: str) -> None:
        sim = register_sim_account(whatsapp_sim, users=5)
        async with session_scope(ctx.sessionmaker) as session:
            account = await create_parley_account(session, sim)
            await delivery.set_limits(session, account_id=account.id, rate_per_s=0)
            rows = await delivery.enqueue_many(
                session, account=account, messages=[template_to(sim.users[i % 5]) for i in range(300)]
            )
        sent = await DeliveryEngine(ctx).run_until_idle()
        assert sent == 300
        keys = sim.keys()
        assert set(keys) == {r.idempotency_key for r in rows}
        assert max(keys.values()) == 1
        async with session_scope(ctx.sessionmaker, write=False) as session:
            assert await _statuses(session) == {"sent": 300}
            ids = set((await session.scalars(select(Message.platform_message_id))).all())
            assert ids == {e["wamid"] for e in sim.record()}
            done = await session.scalar(select(func.count()).where(OutboxJob.status == OutboxJobStatus.done))
            assert done == 300

    async def test_the_running_loop_overlaps_batches_and_still_sends_each_message_once(
        self, ctx: Context, whatsapp_sim: str
    ) -> None:
        sim = register_sim_account(whatsapp_sim, users=5)
        async with session_scope(ctx.sessionmaker) as session:
            account = await create_parley_account(session, sim)
            await delivery.set_limits(session, account_id=account.id, rate_per_s=0)
            rows = await delivery.enqueue_many(
                session, account=account, messages=[template_to(sim.users[i % 5]) for i in range(500)]
            )
        stop = asyncio.Event()
        # Small batches, so that many are claimed while earlier ones are still being sent.
        loop = asyncio.create_task(DeliveryEngine(ctx).run(stop, batch_size=25))
        try:
            for _ in range(600):
                async with session_scope(ctx.sessionmaker, write=False) as session:
                    if await _statuses(session) == {"sent": 500}:
                        break
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            await asyncio.wait_for(loop, timeout=30)
        keys = sim.keys()
        assert set(keys) == {r.idempotency_key for r in rows}
        assert max(keys.values()) == 1
        async with session_scope(ctx.sessionmaker, write=False) as session:
            assert await _statuses(session) == {"sent": 500}
            pending = await session.scalar(
                select(func.count()).where(OutboxJob.status != OutboxJobStatus.done)
            )
            assert pending == 0

    async def test_permanent_error_fails_with_the_platform_reason(
        self, ctx: Context, whatsapp_sim: str
    ) -> None:
        sim = register_sim_account(whatsapp_sim, users=1)
        async with session_scope(ctx.sessionmaker) as session:
            account = await create_parley_account(session, sim)
            unknown = await delivery.enqueue(session, account=account, message=template_to("19999999999"))
            window = await delivery.enqueue(session, account=account, message=text_to(sim.users[0]))
        await DeliveryEngine(ctx).run_until_idle()
        async with session_scope(ctx.sessionmaker, write=False) as session:
            failed_unknown = await session.get(Message, unknown.id)
            failed_window = await session.get(Message, window.id)
            assert failed_unknown is not None and failed_window is not None
            assert failed_unknown.status == MessageStatus.failed
            assert failed_unknown.error_code == "131026"
            assert failed_unknown.error_reason and "undeliverable" in failed_unknown.error_reason.lower()
            assert failed_unknown.failed_at is not None
            assert failed_window.status == MessageStatus.failed
            assert failed_window.error_code == "131047"
            jobs = (await session.scalars(select(OutboxJob.status))).all()
            assert list(jobs) == [OutboxJobStatus.failed, OutboxJobStatus.failed]
        assert sim.record() == []


class TestRetries:
    async def test_retryable_errors_back_off_then_dead_letter_then_supervisor_retry(
        self, ctx: Context, whatsapp_sim: str
    ) -> None:
        sim = register_sim_account(whatsapp_sim, users=1)
        # Three 503s in a row: the first two sends are retried, the third dead-letters (limit 3).
        sim.limits(faults=[{"count": 3, "code": 131016}])
        clock = ManualClock()
        engine = DeliveryEngine(
            ctx, clock=clock, policy=RetryPolicy(max_attempts=3, base_s=10, max_delay_s=60)
        )
        async with session_scope(ctx.sessionmaker) as session:
            account = await create_parley_account(session, sim)
            message = await delivery.enqueue(session, account=account, message=template_to(sim.users[0]))

        delays = []
        for _ in range(2):
            assert await engine.run_until_idle() == 1
            async with session_scope(ctx.sessionmaker, write=False) as session:
                job = await session.scalar(select(OutboxJob))
                assert job is not None and job.status == OutboxJobStatus.pending
                assert job.last_error_code == "131016"
                delays.append((job.due_at - clock.now()).total_seconds())
            assert await engine.run_until_idle() == 0  # not due yet: backing off
            clock.advance(timedelta(seconds=61))
        # Exponential with jitter: about 10 s, then about 20 s (at least half of each).
        assert 4 < delays[0] <= 10
        assert 9 < delays[1] <= 20

        assert await engine.run_until_idle() == 1
        async with session_scope(ctx.sessionmaker, write=False) as session:
            job = await session.scalar(select(OutboxJob))
            stored = await session.get(Message, message.id)
            assert job is not None and stored is not None
            assert (job.status, job.attempts) == (OutboxJobStatus.dead, 3)
            assert stored.status == MessageStatus.failed
            assert stored.error_code == "131016"

        async with session_scope(ctx.sessionmaker) as session:
            assert await delivery.retry_jobs(session, job_ids=[job.id]) == 1
        assert await engine.run_until_idle() == 1
        async with session_scope(ctx.sessionmaker, write=False) as session:
            stored = await session.get(Message, message.id)
            assert stored is not None and stored.status == MessageStatus.sent
            assert stored.error_code is None
        assert list(sim.keys().values()) == [1]


class TestQuota:
    async def test_exhausted_quota_waits_for_the_reset(self, ctx: Context, whatsapp_sim: str) -> None:
        sim = register_sim_account(whatsapp_sim, users=20)
        clock = ManualClock()
        engine = DeliveryEngine(ctx, clock=clock)
        async with session_scope(ctx.sessionmaker) as session:
            account = await create_parley_account(session, sim)
            await delivery.set_limits(
                session, account_id=account.id, rate_per_s=0, daily_quotas={"messages": 1000}
            )
            await delivery.enqueue_many(
                session, account=account, messages=[template_to(sim.users[i % 20]) for i in range(1500)]
            )
        await engine.run_until_idle()
        assert len(sim.record()) == 1000
        _day, reset_at = quota_day("whatsapp", clock.now())
        async with session_scope(ctx.sessionmaker, write=False) as session:
            assert await _statuses(session) == {"sent": 1000, "queued": 500}
            waiting = (
                await session.scalars(select(OutboxJob.due_at).where(OutboxJob.status == "pending"))
            ).all()
            assert set(waiting) == {reset_at}

        clock.jump_to(reset_at + timedelta(seconds=1))
        await engine.run_until_idle()
        assert len(sim.record()) == 1500
        assert max(sim.keys().values()) == 1
        async with session_scope(ctx.sessionmaker, write=False) as session:
            assert await _statuses(session) == {"sent": 1500}
