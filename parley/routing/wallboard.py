"""The supervisors' wallboard: per queue the waiting count, the longest wait, agents by state and load,
and today's service level (share of customers answered within the queue's target)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.kit.types import utcnow
from parley.models import EntryStatus, QueueEntry, QueueMember, RoutingAgent, RoutingQueue, User
from parley.routing.engine import capacities, loads
from parley.routing.hours import hours_of
from parley.routing.schemas import AgentBoard, QueueBoard, Wallboard


def _start_of_day(now: datetime, zone: str) -> datetime:
    local = now.astimezone(ZoneInfo(zone))
    return datetime.combine(local.date(), time(0), tzinfo=ZoneInfo(zone))


async def wallboard(session: AsyncSession, *, now: datetime | None = None) -> Wallboard:
    now = now or utcnow()
    queues = list(
        (
            await session.scalars(
                select(RoutingQueue).where(RoutingQueue.is_active.is_(True)).order_by(RoutingQueue.name)
            )
        ).all()
    )
    waiting = {
        queue_id: (int(count), int(vips or 0), oldest)
        for queue_id, count, vips, oldest in (
            await session.execute(
                select(
                    QueueEntry.queue_id,
                    func.count(),
                    func.sum(QueueEntry.priority),
                    func.min(QueueEntry.waiting_since),
                )
                .where(QueueEntry.status == EntryStatus.waiting)
                .group_by(QueueEntry.queue_id)
            )
        ).all()
    }
    member_rows = (
        await session.execute(
            select(
                QueueMember.queue_id, User.id, User.name, User.presence, User.role_id, RoutingAgent.capacity
            )
            .join(User, User.id == QueueMember.user_id)
            .outerjoin(RoutingAgent, RoutingAgent.user_id == User.id)
            .where(User.is_active.is_(True))
        )
    ).all()
    people = {row[1]: row for row in member_rows}
    caps = await capacities(session, [(row[1], row[4], row[5]) for row in people.values()])
    current = await loads(session, list(people))
    by_queue: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    for row in member_rows:
        by_queue[row[0]].append(row[1])

    earliest = min((_start_of_day(now, hours_of(q.hours).timezone) for q in queues), default=now)
    finished = (
        await session.execute(
            select(
                QueueEntry.queue_id, QueueEntry.status, QueueEntry.waiting_since, QueueEntry.left_at
            ).where(
                QueueEntry.status.in_([EntryStatus.assigned, EntryStatus.abandoned]),
                QueueEntry.left_at >= earliest,
            )
        )
    ).all()
    boards = []
    for queue in queues:
        since = _start_of_day(now, hours_of(queue.hours).timezone)
        answered = within = abandoned = 0
        for queue_id, status, waiting_since, left_at in finished:
            if queue_id != queue.id or left_at is None or left_at < since:
                continue
            if status == EntryStatus.assigned:
                answered += 1
                within += (left_at - waiting_since).total_seconds() <= queue.service_level_s
            else:
                abandoned += 1
        count, vips, oldest = waiting.get(queue.id, (0, 0, None))
        states = {"online": 0, "away": 0, "offline": 0, "full": 0}
        load = capacity = 0
        for user_id in by_queue.get(queue.id, []):
            presence = people[user_id][3]
            states[presence if presence in states else "offline"] += 1
            if presence == "online":
                load += current.get(user_id, 0)
                capacity += caps[user_id]
                if current.get(user_id, 0) >= caps[user_id]:
                    states["full"] += 1
        boards.append(
            QueueBoard(
                id=queue.id,
                name=queue.name,
                open=hours_of(queue.hours).is_open(now),
                waiting=count,
                vip_waiting=vips,
                longest_wait_s=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
                agents=states,
                load=load,
                capacity=capacity,
                answered_today=answered,
                within_target_today=within,
                abandoned_today=abandoned,
                service_level=round(within / (answered + abandoned), 4) if answered + abandoned else None,
            )
        )
    agents = sorted(
        (
            AgentBoard(id=uid, name=row[2], presence=row[3], load=current.get(uid, 0), capacity=caps[uid])
            for uid, row in people.items()
        ),
        key=lambda a: a.name,
    )
    return Wallboard(at=now, queues=boards, agents=agents)
