"""The import worker: claims one queued import at a time and works it to the end."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from parley.contacts.imports.service import claim_import, run_import, wake_event
from parley.context import Context
from parley.worker import loop

log = structlog.get_logger()

IDLE_S = 2.0


@loop("contacts.imports")
async def import_worker(ctx: Context, stop: asyncio.Event) -> None:
    wake = wake_event(ctx)
    while not stop.is_set():
        wake.clear()
        try:
            claim = await claim_import(ctx)
            if claim is not None:
                log.info("contacts.import.claimed", import_id=str(claim.job_id))
                await run_import(ctx, claim, stop=stop)
                continue
        except Exception:
            log.exception("contacts.import.failed")
        # Woken at once by an import started in this process; other nodes' imports are found by polling.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_first(stop, wake), timeout=IDLE_S)


async def _first(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
