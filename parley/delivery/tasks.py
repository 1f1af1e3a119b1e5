"""The delivery loops and housekeeping, run by ``parley serve`` (embedded) and ``parley worker``.

Two claim loops per process: ``delivery.express`` claims only agent replies
and automated messages, in small batches, so that an agent's reply never waits
behind a two-hundred-message bulk batch in flight; ``delivery.main`` claims
everything in (priority, due_at) order.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from parley.context import Context
from parley.db import session_scope
from parley.delivery import metrics
from parley.delivery.engine import DeliveryEngine, shared_flow
from parley.delivery.repository import outbox
from parley.delivery.service import summary
from parley.kit.types import utcnow
from parley.models import Priority
from parley.worker import loop, periodic

log = structlog.get_logger()

_ENGINE_KEY = "delivery.engine"
EXPRESS_BATCH = 50
KEEP_DONE = timedelta(days=1)
METRICS_EVERY_S = 15.0


def engine_for(ctx: Context) -> DeliveryEngine:
    engine = ctx.extras.get(_ENGINE_KEY)
    if engine is None:
        engine = DeliveryEngine(ctx)
        ctx.extras[_ENGINE_KEY] = engine
    return engine


@loop("delivery.express")
async def delivery_express(ctx: Context, stop: asyncio.Event) -> None:
    await engine_for(ctx).run(stop, max_priority=Priority.automated, batch_size=EXPRESS_BATCH)


@loop("delivery.main")
async def delivery_main(ctx: Context, stop: asyncio.Event) -> None:
    await engine_for(ctx).run(stop)


@loop("delivery.metrics")
async def delivery_metrics(ctx: Context, stop: asyncio.Event) -> None:
    """Refreshes the Prometheus gauges from the database (every process that runs workers)."""
    while not stop.is_set():
        try:
            async with session_scope(ctx.sessionmaker, write=False) as session:
                metrics.publish(await summary(session, flow=shared_flow(ctx), dead_letter_limit=1))
        except Exception:
            log.exception("delivery.metrics_failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=METRICS_EVERY_S)


@periodic("delivery.purge", every_s=600)
async def delivery_purge(session: AsyncSession) -> int:
    """Drops finished jobs after a day; the message rows keep the history."""
    return await outbox.purge_done(session, before=utcnow() - KEEP_DONE)
