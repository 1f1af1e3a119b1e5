"""The flow worker: ask timeouts, waits and HTTP calls of runs, from the database (so a restart resumes them)."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from parley.automation import knowledge
from parley.automation.flows import service as flows
from parley.context import Context
from parley.worker import loop

log = structlog.get_logger()

POLL_S = 1.0


@loop("automation.flows")
async def flow_worker(ctx: Context, stop: asyncio.Event) -> None:
    # jieba's dictionary takes a second or two to load: not on a webhook's clock, and only
    # where there is a knowledge base to search.
    if await knowledge.has_articles(ctx):
        await asyncio.to_thread(knowledge.warm)
    wake = asyncio.Event()
    flows.register_wakeup(wake)
    try:
        while not stop.is_set():
            wake.clear()
            try:
                handled = await flows.tick(ctx)
            except Exception:
                log.exception("automation.tick_failed")
                handled = 0
            if handled:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_first(stop, wake), timeout=POLL_S)
    finally:
        flows.unregister_wakeup(wake)


async def _first(*events: asyncio.Event) -> None:
    waiters = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
