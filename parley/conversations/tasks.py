"""Background work of the inbox."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from parley.context import Context
from parley.conversations.inbound import sweep
from parley.db import session_scope
from parley.worker import loop

log = structlog.get_logger()

SWEEP_EVERY_S = 5.0


@loop("inbound.sweep")
async def sweep_pending(ctx: Context, stop: asyncio.Event) -> None:
    """Retries inbound events whose inline processing failed."""
    while not stop.is_set():
        try:
            async with session_scope(ctx.sessionmaker) as session:
                handled = await sweep(session, ctx)
            if handled:
                log.info("inbound.swept", events=handled)
        except Exception:
            log.exception("inbound.sweep_failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=SWEEP_EVERY_S)
