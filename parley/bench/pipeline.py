"""``parley bench pipeline``: the inbound pipeline's own CPU per event, in-process, without HTTP.

Runs webhook-like WeChat text events for many customers through the
intake's batches (:func:`parley.conversations.batch.process_batch`: storing,
contact, conversation, message, lifecycle stage, automation, routing), one
payload per event and ``--batch`` of them per write transaction, as the
webhooks' group commit does. ``--per-event`` instead stores them first and
times :func:`parley.conversations.inbound.process_rows` alone, the path of the
sweeper and of a batch that had to be redone event by event.
It reports CPU milliseconds and SQL statements per event, separately for
first messages (a new customer) and later ones (a known customer), because
the two take different paths. CPU time hardly depends on what else the
machine runs, unlike a rate.
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy import event, select

from parley.bench.support import BENCH_SECRET, workspace
from parley.cli import bench_app

APP_ID = "wx0123456789abcdef"


@dataclass
class Phase:
    events: int = 0
    process_cpu_s: float = 0.0
    transaction_cpu_s: float = 0.0
    statements: int = 0

    def summary(self) -> dict[str, Any]:
        n = self.events or 1
        return {
            "events": self.events,
            "cpu_ms_per_event": round(self.process_cpu_s * 1000 / n, 3),
            "transaction_cpu_ms_per_event": round(self.transaction_cpu_s * 1000 / n, 3),
            "statements_per_event": round(self.statements / n, 2),
        }


async def _configure(ctx: Any, *, keyword_rules: int) -> Any:
    """A WeChat account with the configuration an ordinary text meets: keyword rules, an entry rule, a queue."""
    from parley.automation import rules as automation_rules
    from parley.automation.schemas import RuleIn
    from parley.bench.inbound import create_bench_account
    from parley.db import session_scope
    from parley.routing import admin as routing_admin
    from parley.routing.rules import RuleConditions
    from parley.routing.schemas import QueueWrite, RuleWrite

    async with session_scope(ctx.sessionmaker) as session:
        account = await create_bench_account(session, ctx)
        for n in range(keyword_rules):
            await automation_rules.create_rule(
                session,
                RuleIn.model_validate(
                    {
                        "account_id": account.id,
                        "name": f"rule {n}",
                        "keywords": [{"text": f"refund{n}", "match": "contains"}, {"text": f"price{n}"}],
                        "replies": [{"type": "text", "text": f"answer {n}"}],
                    }
                ),
            )
        queue = await routing_admin.create_queue(session, QueueWrite(name="Support"))
        await routing_admin.create_rule(
            session,
            RuleWrite(
                name="asks for a person",
                queue_id=queue.id,
                conditions=RuleConditions(event="message", keywords=["human agent"]),
            ),
        )
        return account.id


def _events(run: str, batch: str, account_external_id: str, count: int, customers: range) -> list[Any]:
    from parley.channels.base import InboundEvent, InboundKind, Sender

    now = datetime.now(UTC)
    events = []
    for n in range(count):
        customer = customers[n % len(customers)]
        events.append(
            InboundEvent(
                kind=InboundKind.message,
                type="text",
                dedupe_key=f"{run}-{batch}-{customer}-{n}",
                platform_message_id=f"{run}{batch}{customer}-{n}",
                account_external_id=account_external_id,
                sender=Sender(id=f"o{run}user{customer:06d}"),
                occurred_at=now,
                text=f"hello, this is message {n} from customer {customer}",
            )
        )
    return events


async def _run(
    database_url: str,
    directory: Path,
    *,
    customers: int,
    messages: int,
    batch: int,
    keyword_rules: int,
    profile: Path | None,
    statement_times: bool = False,
    per_event: bool = False,
) -> dict[str, Any]:
    from parley.channels.ingest import store_events
    from parley.config import Environment, Settings
    from parley.context import build_context
    from parley.conversations.batch import Payload, process_batch
    from parley.conversations.inbound import process_rows
    from parley.db import savepoint, session_scope
    from parley.migrate import upgrade_async
    from parley.models import ChannelAccount
    from parley.models import InboundEvent as InboundEventRow
    from parley.realtime.service import start_bus

    await upgrade_async(database_url)
    settings = Settings(
        env=Environment.testing, database_url=database_url, data_dir=directory, secret_key=BENCH_SECRET
    )
    ctx = build_context(settings)
    await start_bus(ctx)
    statements = 0

    def count(*_args: Any) -> None:
        nonlocal statements
        statements += 1

    event.listen(ctx.engine.sync_engine, "before_cursor_execute", count)
    spent: dict[str, list[float]] = {}
    if statement_times:

        def started(conn: Any, _cursor: Any, _statement: str, *_args: Any) -> None:
            conn.info["bench.t0"] = time.perf_counter()

        def finished(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            entry = spent.setdefault(" ".join(statement.split())[:160], [0, 0.0])
            entry[0] += 1
            entry[1] += time.perf_counter() - conn.info.pop("bench.t0", time.perf_counter())

        event.listen(ctx.engine.sync_engine, "before_cursor_execute", started)
        event.listen(ctx.engine.sync_engine, "after_cursor_execute", finished)
    profiler = cProfile.Profile() if profile else None
    try:
        account_id = await _configure(ctx, keyword_rules=keyword_rules)
        run = uuid.uuid4().hex[:6]

        async def drive_batched(events: list[Any], phase: Phase) -> None:
            for start in range(0, len(events), batch):
                chunk = events[start : start + batch]
                t0, s0 = time.process_time(), statements
                async with session_scope(ctx.sessionmaker) as session:
                    account = await session.get(ChannelAccount, account_id)
                    assert account is not None  # noqa: S101  (created above)
                    outcomes: list[Any] = []
                    p0 = time.process_time()
                    if profiler:
                        profiler.enable()
                    # One payload per event, as webhooks bring them, in the intake's savepoint.
                    async with savepoint(session, keep=(ChannelAccount,)):
                        await process_batch(
                            session, ctx, [Payload(account, [e], "", None) for e in chunk], outcomes
                        )
                    if profiler:
                        profiler.disable()
                    phase.process_cpu_s += time.process_time() - p0
                    if len(outcomes) != len(chunk):
                        raise RuntimeError(f"{len(chunk) - len(outcomes)} events were not processed")
                phase.transaction_cpu_s += time.process_time() - t0
                phase.statements += statements - s0
                phase.events += len(chunk)

        async def drive(events: list[Any], phase: Phase) -> None:
            nonlocal statements
            if not per_event:
                await drive_batched(events, phase)
                return
            for start in range(0, len(events), batch):
                chunk = events[start : start + batch]
                async with session_scope(ctx.sessionmaker) as session:
                    account = await session.get(ChannelAccount, account_id)
                    assert account is not None  # noqa: S101  (created above)
                    stored = await store_events(session, account=account, events=chunk, raw="")
                    await session.commit()
                t0, s0 = time.process_time(), statements
                async with session_scope(ctx.sessionmaker) as session:
                    account = await session.get(ChannelAccount, account_id)
                    assert account is not None  # noqa: S101
                    rows = list(
                        (
                            await session.scalars(
                                select(InboundEventRow)
                                .where(InboundEventRow.id.in_(stored.new_ids))
                                .order_by(InboundEventRow.id)
                            )
                        ).all()
                    )
                    p0 = time.process_time()
                    if profiler:
                        profiler.enable()
                    outcomes = await process_rows(session, ctx, account=account, rows=rows)
                    if profiler:
                        profiler.disable()
                    phase.process_cpu_s += time.process_time() - p0
                    if len(outcomes) != len(rows):
                        raise RuntimeError(f"{len(rows) - len(outcomes)} events failed: see the log")
                phase.transaction_cpu_s += time.process_time() - t0
                phase.statements += statements - s0
                phase.events += len(rows)

        # Warm-up on customers of its own: imports, statement caches, compiled rules.
        await drive(_events(run, "warm", APP_ID, min(200, batch * 4), range(10**5, 10**5 + 50)), Phase())
        spent.clear()
        if profiler:
            profiler = cProfile.Profile()
        first, later = Phase(), Phase()
        await drive(_events(run, "first", APP_ID, customers, range(customers)), first)
        await drive(_events(run, "later", APP_ID, messages, range(customers)), later)
        if profiler and profile:
            profiler.dump_stats(profile)
        total = Phase(
            events=first.events + later.events,
            process_cpu_s=first.process_cpu_s + later.process_cpu_s,
            transaction_cpu_s=first.transaction_cpu_s + later.transaction_cpu_s,
            statements=first.statements + later.statements,
        )
        return {
            "backend": ctx.engine.dialect.name,
            "path": "per_event" if per_event else "batched",
            "batch": batch,
            "keyword_rules": keyword_rules,
            "new_customer": first.summary(),
            "known_customer": later.summary(),
            **total.summary(),
            **(
                {
                    # Time inside the driver per statement (the database's own work, not SQLAlchemy's).
                    "statements_by_time": [
                        {
                            "sql": sql,
                            "count": int(n),
                            "ms_per_event": round(t * 1000 / (total.events or 1), 3),
                        }
                        for sql, (n, t) in sorted(spent.items(), key=lambda kv: -kv[1][1])[:12]
                    ]
                }
                if statement_times
                else {}
            ),
        }
    finally:
        await ctx.close()


@bench_app.command("pipeline")
def bench_pipeline(
    customers: Annotated[int, typer.Option(help="Distinct customers, each writing first once")] = 500,
    messages: Annotated[int, typer.Option(help="Later messages, spread over the customers")] = 2000,
    batch: Annotated[int, typer.Option(help="Events per write transaction")] = 50,
    keyword_rules: Annotated[int, typer.Option(help="Keyword rules on the account (none match)")] = 20,
    profile: Annotated[
        Path | None, typer.Option(help="Write a cProfile of the measured processing here")
    ] = None,
    statement_times: Annotated[
        bool, typer.Option("--statement-times", help="Also list the statements that took the most time")
    ] = False,
    per_event: Annotated[
        bool,
        typer.Option(
            "--per-event",
            help="Each event through process_rows (the sweeper's and the fallback's path), not the intake's batches",
        ),
    ] = False,
    database_url: Annotated[
        str | None, typer.Option(help="Use this (empty) database instead of a temporary SQLite file")
    ] = None,
) -> None:
    """Measure the inbound pipeline's CPU and statements per event, in-process."""
    with workspace(database_url) as ws:
        result = asyncio.run(
            _run(
                ws.database_url,
                ws.directory,
                customers=customers,
                messages=messages,
                batch=batch,
                keyword_rules=keyword_rules,
                profile=profile,
                statement_times=statement_times,
                per_event=per_event,
            )
        )
    print(json.dumps(result))
