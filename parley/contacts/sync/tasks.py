"""The follower-sync worker: claims one due sync at a time."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from parley.contacts.sync.service import claim_sync, run_sync
from parley.context import Context
from parley.worker import loop

log = structlog.get_logger()

IDLE_S = 1.0


@loop("contacts.follower_sync")
async def follower_sync_worker(ctx: Context, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            claim = await claim_sync(ctx)
            if claim is not None:
                await run_sync(ctx, claim)
                continue
        except Exception:
            log.exception("contacts.sync.failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=IDLE_S)
