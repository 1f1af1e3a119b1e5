"""``parley bench routing``: assignment decisions per second with many agents and a long queue.

Sets up ``--agents`` online agents (capacity ``--capacity``) spread over ``--queues``
queues (each agent in two, with skill levels; the queues use every strategy, some
with last-agent-first, 5% VIP customers) and ``--waiting`` waiting conversations.
Then it runs dispatch passes, as the engine does when agents free up: each pass
fills every free slot; between passes (untimed) the assigned conversations are
resolved, until the queue is empty. ``decisions_per_s`` is decisions over the time
spent inside dispatch, database writes included. ``single_decision_ms_p50`` is the
latency of the hook that runs when one agent frees one slot.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from datetime import timedelta
from typing import Annotated, Any

import typer

from parley.bench.support import BENCH_SECRET, percentile, workspace
from parley.cli import bench_app


async def _run(
    database_url: str, directory: Any, agents: int, waiting: int, capacity: int, queues: int, singles: int
) -> dict[str, Any]:
    from sqlalchemy import insert, select, update

    from parley.auth import service as auth_service
    from parley.config import Environment, Settings
    from parley.context import build_context
    from parley.db import session_scope
    from parley.kit.types import utcnow
    from parley.migrate import upgrade_async
    from parley.models import (
        ChannelAccount,
        Contact,
        Conversation,
        EntryStatus,
        QueueEntry,
        QueueMember,
        Role,
        RoutingAgent,
        RoutingQueue,
        Strategy,
        User,
    )
    from parley.routing.engine import dispatch
    from parley.routing.service import on_agent_available

    await upgrade_async(database_url)
    settings = Settings(
        env=Environment.testing, database_url=database_url, data_dir=directory, secret_key=BENCH_SECRET
    )
    ctx = build_context(settings)
    rng = random.Random(1)
    now = utcnow()
    try:
        async with session_scope(ctx.sessionmaker) as session:
            await auth_service.role.ensure_builtin(session)
            role_id = await session.scalar(select(Role.id).where(Role.name == "agent"))
            account_id = uuid.uuid4()
            session.add(
                ChannelAccount(
                    id=account_id,
                    type="webchat",
                    name="Bench",
                    api_base_url="http://127.0.0.1:9",
                    external_id="bench",
                    config={},
                    secrets_sealed="",
                    is_active=True,
                )
            )
            await session.flush()
            strategies = list(Strategy)
            queue_ids = [uuid.uuid4() for _ in range(queues)]
            await session.execute(
                insert(RoutingQueue),
                [
                    {
                        "id": q,
                        "name": f"Queue {i}",
                        "strategy": strategies[i % len(strategies)].value,
                        "last_agent_window_s": 3600 if i % 3 == 0 else 0,
                        "vip_rule": {"tags": ["vip"]},
                        "hours": {},
                        "created_at": now,
                        "updated_at": now,
                    }
                    for i, q in enumerate(queue_ids)
                ],
            )
            user_ids = [uuid.uuid4() for _ in range(agents)]
            await session.execute(
                insert(User),
                [
                    {
                        "id": u,
                        "email": f"agent{i}@bench.parley",
                        "name": f"Agent {i:04d}",
                        "password_hash": "-",
                        "role_id": role_id,
                        "presence": "online",
                        "presence_changed_at": now - timedelta(seconds=rng.randint(0, 3600)),
                        "created_at": now,
                        "updated_at": now,
                    }
                    for i, u in enumerate(user_ids)
                ],
            )
            await session.execute(
                insert(RoutingAgent), [{"user_id": u, "capacity": capacity} for u in user_ids]
            )
            await session.execute(
                insert(QueueMember),
                [
                    {
                        "queue_id": q,
                        "user_id": u,
                        "skill_level": rng.randint(1, 3),
                        "weight": rng.randint(1, 4),
                        "assigned_count": 0,
                    }
                    for i, u in enumerate(user_ids)
                    for q in {queue_ids[i % queues], queue_ids[(i * 7 + 3) % queues]}
                ],
            )
            contact_ids = [uuid.uuid4() for _ in range(waiting)]
            conversation_ids = [uuid.uuid4() for _ in range(waiting)]
            for start in range(0, waiting, 2000):
                chunk = range(start, min(start + 2000, waiting))
                await session.execute(
                    insert(Contact),
                    [
                        {
                            "id": contact_ids[i],
                            "display_name": f"c{i}",
                            "attributes": {},
                            "created_at": now,
                            "updated_at": now,
                        }
                        for i in chunk
                    ],
                )
                await session.execute(
                    insert(Conversation),
                    [
                        {
                            "id": conversation_ids[i],
                            "contact_id": contact_ids[i],
                            "account_id": account_id,
                            "status": "open",
                            "created_at": now,
                            "updated_at": now,
                        }
                        for i in chunk
                    ],
                )
                await session.execute(
                    insert(QueueEntry),
                    [
                        {
                            "id": uuid.uuid4(),
                            "queue_id": queue_ids[i % queues],
                            "conversation_id": conversation_ids[i],
                            "contact_id": contact_ids[i],
                            "status": EntryStatus.waiting.value,
                            "priority": 1 if rng.random() < 0.05 else 0,
                            "entered_at": now - timedelta(seconds=waiting - i),
                            "waiting_since": now - timedelta(seconds=waiting - i),
                            "note": "",
                            "reason": "bench",
                        }
                        for i in chunk
                    ],
                )

        decisions = 0
        timed = 0
        spent = 0.0
        passes = 0
        single_ms: list[float] = []
        # Leave enough waiting for one last fill and the single-slot hooks timed below.
        reserve = singles + agents * capacity if singles else 0
        while waiting - decisions > reserve or not singles:
            started = time.perf_counter()
            async with session_scope(ctx.sessionmaker) as session:
                made = await dispatch(session, None)
            spent += time.perf_counter() - started
            passes += 1
            decisions += len(made)
            timed += len(made)
            if not made:
                break
            async with session_scope(ctx.sessionmaker) as session:
                await session.execute(
                    update(Conversation)
                    .where(Conversation.id.in_([d.conversation_id for d in made]))
                    .values(status="resolved", resolved_at=utcnow())
                )
        if singles:
            async with session_scope(ctx.sessionmaker) as session:
                filled = await dispatch(session, None)
            decisions += len(filled)
        # One agent frees one slot: the hook that runs when a conversation is resolved.
        for _ in range(singles):
            async with session_scope(ctx.sessionmaker) as session:
                busy = await session.execute(
                    select(Conversation.id, Conversation.assignee_id)
                    .where(Conversation.status == "open", Conversation.assignee_id.is_not(None))
                    .limit(1)
                )
                row = busy.first()
                if row is None or row[1] is None:
                    break
                await session.execute(
                    update(Conversation).where(Conversation.id == row[0]).values(status="resolved")
                )
                started = time.perf_counter()
                made = await on_agent_available(session, None, row[1])
                single_ms.append((time.perf_counter() - started) * 1000)
                decisions += len(made)
        async with session_scope(ctx.sessionmaker, write=False) as session:
            from sqlalchemy import func

            left = await session.scalar(
                select(func.count()).select_from(QueueEntry).where(QueueEntry.status == EntryStatus.waiting)
            )
        return {
            "benchmark": "routing",
            "database": database_url.split(":", 1)[0],
            "agents": agents,
            "capacity": capacity,
            "queues": queues,
            "waiting": waiting,
            "passes": passes,
            "decisions": decisions,
            "left_waiting": int(left or 0),
            "dispatch_s": round(spent, 3),
            "timed_decisions": timed,
            "decisions_per_s": round(timed / spent, 1) if spent else None,
            "single_decision_ms_p50": round(percentile(single_ms, 50), 2) if single_ms else None,
            "single_decision_ms_p95": round(percentile(single_ms, 95), 2) if single_ms else None,
        }
    finally:
        await ctx.close()


@bench_app.command("routing")
def routing(
    agents: Annotated[int, typer.Option(help="Online agents")] = 500,
    waiting: Annotated[int, typer.Option(help="Waiting conversations")] = 10_000,
    capacity: Annotated[int, typer.Option(help="Concurrent conversations per agent")] = 5,
    queues: Annotated[int, typer.Option(help="Queues (each agent is in two)")] = 10,
    singles: Annotated[int, typer.Option(help="Single free-slot hooks timed at the end")] = 200,
    database_url: Annotated[str, typer.Option(help="Database (default: a temporary SQLite file)")] = "",
) -> None:
    """Routing: assignment decisions per second."""
    with workspace(database_url or None) as ws:
        result = asyncio.run(_run(ws.database_url, ws.directory, agents, waiting, capacity, queues, singles))
    print(json.dumps(result))
