"""Background work of the inbox."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from parley.context import Context
from parley.conversations.inbound import sweep
from parley.conversations.lifecycle import close_idle, wake_snoozed
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


LIFECYCLE_EVERY_S = 30.0


@loop("conversations.lifecycle")
async def conversation_lifecycle(ctx: Context, stop: asyncio.Event) -> None:
    """Wakes snoozed conversations when their time comes and closes idle ones."""
    while not stop.is_set():
        try:
            async with session_scope(ctx.sessionmaker) as session:
                woken = await wake_snoozed(session, ctx)
                closed = await close_idle(session, ctx)
            if woken or closed:
                log.info("conversations.lifecycle", woken=woken, closed=closed)
        except Exception:
            log.exception("conversations.lifecycle_failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=LIFECYCLE_EVERY_S)
