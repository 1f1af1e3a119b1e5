"""Routing's periodic pass: overflow after the wait limit, repeated position notices, and a safety-net dispatch.

Assignment normally happens at once in the transaction that queued a conversation
or freed an agent; this pass catches what no event announced (an idle conversation
closed by the lifecycle job, a business-hours boundary) and moves the clock-driven work.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from parley.context import Context
from parley.db import session_scope
from parley.routing.service import tick
from parley.worker import loop

log = structlog.get_logger()

TICK_EVERY_S = 5.0


@loop("routing.tick")
async def routing_tick(ctx: Context, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            async with session_scope(ctx.sessionmaker) as session:
                result = await tick(session, ctx)
            if any(result.values()):
                log.info("routing.tick", **result)
        except Exception:
            log.exception("routing.tick_failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=TICK_EVERY_S)
