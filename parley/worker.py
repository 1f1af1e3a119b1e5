"""Background work: long-running loops and periodic jobs.

``parley serve`` runs them in-process (the embedded default); ``parley worker``
runs them alone, beside ``parley serve --no-workers`` nodes. Every job keeps its
state in the database, so any process may run it and a restart loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from parley.context import Context
from parley.db import session_scope

log = structlog.get_logger()

Loop = Callable[[Context, asyncio.Event], Awaitable[None]]
PeriodicJob = Callable[[AsyncSession], Awaitable[object]]


@dataclass(frozen=True)
class _Periodic:
    name: str
    every_s: float
    job: PeriodicJob


_LOOPS: dict[str, Loop] = {}
_PERIODIC: dict[str, _Periodic] = {}


def loop(name: str) -> Callable[[Loop], Loop]:
    """Registers a long-running loop; it must return soon after ``stop`` is set."""

    def decorator(fn: Loop) -> Loop:
        _LOOPS[name] = fn
        return fn

    return decorator


def periodic(name: str, *, every_s: float) -> Callable[[PeriodicJob], PeriodicJob]:
    """Registers a job run every ``every_s`` seconds in its own transaction."""

    def decorator(fn: PeriodicJob) -> PeriodicJob:
        _PERIODIC[name] = _Periodic(name, every_s, fn)
        return fn

    return decorator


async def _run_periodic(ctx: Context, spec: _Periodic, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            async with session_scope(ctx.sessionmaker) as session:
                result = await spec.job(session)
            if result:
                log.info("periodic.done", job=spec.name, result=result)
        except Exception:
            log.exception("periodic.failed", job=spec.name)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=spec.every_s)


async def _guard(name: str, coro: Awaitable[None]) -> None:
    try:
        await coro
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("worker.loop_crashed", loop=name)


class Runner:
    """Starts every registered loop and periodic job and stops them together."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        import parley.jobs  # noqa: F401  (registers the jobs)

        for name, fn in _LOOPS.items():
            self.tasks.append(asyncio.create_task(_guard(name, fn(self.ctx, self.stop)), name=name))
        for spec in _PERIODIC.values():
            self.tasks.append(
                asyncio.create_task(
                    _guard(spec.name, _run_periodic(self.ctx, spec, self.stop)), name=spec.name
                )
            )
        log.info("worker.started", loops=sorted(_LOOPS), periodic=sorted(_PERIODIC))

    async def shutdown(self, timeout_s: float = 10) -> None:
        self.stop.set()
        if not self.tasks:
            return
        _done, pending = await asyncio.wait(self.tasks, timeout=timeout_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        self.tasks.clear()


async def run_forever(ctx: Context, stop: asyncio.Event) -> None:
    from parley.realtime.service import start_bus

    # Workers publish too (delivery statuses reach agents' browsers through the bus).
    await start_bus(ctx)
    runner = Runner(ctx)
    runner.start()
    try:
        await stop.wait()
    finally:
        await runner.shutdown()
