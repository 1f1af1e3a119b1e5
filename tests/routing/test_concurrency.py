"""Two nodes assigning at once: no conversation goes to two agents and no agent exceeds capacity.

Two engines (two connection pools, as two ``parley serve --no-workers`` nodes have)
queue 1,000 conversations from many concurrent requests while agents on both
nodes resolve conversations; only the routing hooks assign (no periodic pass),
so every conversation getting an agent also shows that freed capacity is used at once.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from types import SimpleNamespace

from sqlalchemy import func, select, update
from sqlalchemy.exc import DBAPIError

from parley.db import create_engine, create_sessionmaker, session_scope
from parley.models import (
    ChannelAccount,
    Contact,
    Conversation,
    EntryStatus,
    QueueEntry,
    QueueMember,
    RoutingAgent,
    RoutingQueue,
)
from parley.routing.service import enqueue_conversation, on_conversation_closed
from tests.fixtures.factories import create_channel_account, create_user

CONVERSATIONS = 1000
AGENTS = 20
CAPACITY = 5
ARRIVALS_PER_NODE = 6
RESOLVERS_PER_NODE = 2


async def _with_retry(maker, work, stats):
    """PostgreSQL may pick a transaction as a deadlock victim; a real caller retries it, so does the test."""
    for _attempt in range(20):
        try:
            async with session_scope(maker) as session:
                return await work(session)
        except DBAPIError as exc:
            if "deadlock" not in str(exc).lower():
                raise
            stats["retries"] += 1
    raise AssertionError("a transaction kept deadlocking")


async def test_two_nodes_never_double_assign_nor_overfill(session, database_url):
    account: ChannelAccount = await create_channel_account(session)
    queue = RoutingQueue(id=uuid.uuid4(), name="Support", notice_interval_s=0)
    session.add(queue)
    agents = []
    for i in range(AGENTS):
        user = await create_user(session, email=f"agent{i}@example.com", name=f"Agent {i:02d}")
        user.presence = "online"
        agents.append(user.id)
        session.add(RoutingAgent(user_id=user.id, capacity=CAPACITY))
    await session.flush()
    session.add_all([QueueMember(queue_id=queue.id, user_id=a, skill_level=1, weight=1) for a in agents])
    contacts = [Contact(id=uuid.uuid4(), display_name=f"c{i}") for i in range(CONVERSATIONS)]
    session.add_all(contacts)
    await session.flush()
    conversations = [
        Conversation(id=uuid.uuid4(), contact_id=c.id, account_id=account.id, status="open") for c in contacts
    ]
    session.add_all(conversations)
    await session.commit()

    nodes = [create_sessionmaker(create_engine(database_url)) for _ in range(2)]
    ctx = SimpleNamespace(extras={})  # no event bus: nobody to tell in this test
    todo = [c.id for c in conversations]
    random.Random(7).shuffle(todo)
    stats = {"retries": 0, "max_load": 0, "resolved": 0}
    done = asyncio.Event()
    # Agents start resolving once everyone is full, so the run shows capacity (not a lack of work) as the limit.
    saturated = asyncio.Event()

    async def arrivals(maker, ids):
        for conversation_id in ids:

            async def work(s, conversation_id=conversation_id):
                await enqueue_conversation(s, ctx, conversation_id=conversation_id, queue_id=queue.id)

            await _with_retry(maker, work, stats)

    async def resolver(maker, seed):
        rng = random.Random(seed)
        await saturated.wait()
        while not done.is_set():
            async with session_scope(maker, write=False) as s:
                busy = (
                    await s.execute(
                        select(Conversation.id, Conversation.assignee_id).where(
                            Conversation.status == "open", Conversation.assignee_id.is_not(None)
                        )
                    )
                ).all()
            if not busy:
                await asyncio.sleep(0.005)
                continue
            conversation_id, assignee = rng.choice(busy)

            async def work(s, conversation_id=conversation_id, assignee=assignee):
                result = await s.execute(
                    update(Conversation)
                    .where(Conversation.id == conversation_id, Conversation.status == "open")
                    .values(status="resolved")
                )
                if result.rowcount:
                    stats["resolved"] += 1
                    conversation = await s.get(Conversation, conversation_id, populate_existing=True)
                    await on_conversation_closed(s, ctx, conversation, previous_assignee=assignee)

            await _with_retry(maker, work, stats)

    async def watcher(maker):
        while not done.is_set():
            async with session_scope(maker, write=False) as s:
                # Counted before the loads: once all slots were filled, the loads read next show it.
                assigned = await s.scalar(
                    select(func.count())
                    .select_from(QueueEntry)
                    .where(QueueEntry.status == EntryStatus.assigned)
                )
                top = await s.scalar(
                    select(func.count())
                    .select_from(Conversation)
                    .where(Conversation.status == "open", Conversation.assignee_id.is_not(None))
                    .group_by(Conversation.assignee_id)
                    .order_by(func.count().desc())
                    .limit(1)
                )
            stats["max_load"] = max(stats["max_load"], int(top or 0))
            if assigned >= AGENTS * CAPACITY:
                saturated.set()
            if assigned == CONVERSATIONS:
                done.set()
            await asyncio.sleep(0.01)

    chunks = [todo[i :: 2 * ARRIVALS_PER_NODE] for i in range(2 * ARRIVALS_PER_NODE)]
    tasks = [
        *(arrivals(nodes[i % 2], chunk) for i, chunk in enumerate(chunks)),
        *(resolver(nodes[i % 2], i) for i in range(2 * RESOLVERS_PER_NODE)),
        watcher(nodes[0]),
    ]
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=600)
    finally:
        saturated.set()
        done.set()
        for maker in nodes:
            await maker.kw["bind"].dispose()

    # Every conversation was assigned exactly once, to the agent it ended up with.
    per_conversation = dict(
        (
            await session.execute(
                select(QueueEntry.conversation_id, func.count())
                .where(QueueEntry.status == EntryStatus.assigned)
                .group_by(QueueEntry.conversation_id)
            )
        ).all()
    )
    assert len(per_conversation) == CONVERSATIONS
    assert set(per_conversation.values()) == {1}
    mismatched = await session.scalar(
        select(func.count())
        .select_from(QueueEntry)
        .join(Conversation, Conversation.id == QueueEntry.conversation_id)
        .where(
            QueueEntry.status == EntryStatus.assigned, QueueEntry.assigned_to_id != Conversation.assignee_id
        )
    )
    assert mismatched == 0
    assert (
        await session.scalar(
            select(func.count()).select_from(QueueEntry).where(QueueEntry.status == "waiting")
        )
        == 0
    )
    # Nobody was ever above capacity, and the last ones are held within it.
    assert stats["max_load"] <= CAPACITY
    final = (
        (
            await session.execute(
                select(func.count())
                .select_from(Conversation)
                .where(Conversation.status == "open", Conversation.assignee_id.is_not(None))
                .group_by(Conversation.assignee_id)
            )
        )
        .scalars()
        .all()
    )
    assert max(final) <= CAPACITY
    # The agents were really saturated: capacity was the limit, not a lack of work.
    assert stats["max_load"] == CAPACITY
    assert stats["resolved"] >= CONVERSATIONS - AGENTS * CAPACITY
