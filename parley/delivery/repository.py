"""Every query of the delivery outbox (STYLE.md §1: repositories hold all queries).

Writes that touch many jobs run as one executemany, so a batch of two hundred
sends costs a handful of statements, not hundreds.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from parley.kit.types import UTCDateTime
from parley.models import Message, MessageStatus, OutboxJob, OutboxJobStatus

jobs: Table = OutboxJob.__table__  # type: ignore[assignment]
messages: Table = Message.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class ClaimedJob:
    id: int
    message_id: int
    account_id: uuid.UUID
    flow_key: str
    quota_api: str | None
    priority: int
    attempts: int
    claims: int
    token: str


@dataclass(frozen=True)
class Release:
    job_id: int
    due_at: datetime


@dataclass(frozen=True)
class Sent:
    job_id: int
    message_id: int
    platform_message_id: str | None


@dataclass(frozen=True)
class Retry:
    job_id: int
    due_at: datetime
    code: str
    error: str


@dataclass(frozen=True)
class Failure:
    job_id: int
    message_id: int
    job_status: OutboxJobStatus  # failed (permanent) or dead (out of attempts)
    code: str
    reason: str


class OutboxRepository:
    async def any_due(self, session: AsyncSession, *, now: datetime, max_priority: int | None = None) -> bool:
        """A cheap read, so idle workers don't take SQLite's write lock ten times a second."""
        stmt = select(jobs.c.id).where(jobs.c.status == OutboxJobStatus.pending, jobs.c.due_at <= now)
        if max_priority is not None:
            stmt = stmt.where(jobs.c.priority <= max_priority)
        return (await session.scalar(stmt.limit(1))) is not None

    async def claim(
        self,
        session: AsyncSession,
        *,
        now: datetime,
        lease_until: datetime,
        limit: int,
        token: str,
        worker: str,
        max_priority: int | None = None,
    ) -> list[ClaimedJob]:
        """Claims up to ``limit`` due jobs, most urgent first, by pushing their due time to the lease's end.

        PostgreSQL: the inner SELECT takes row locks with SKIP LOCKED, so
        concurrent workers claim disjoint sets without waiting on each other.
        SQLite: the caller holds the database's write lock (BEGIN IMMEDIATE),
        which makes this UPDATE…RETURNING atomic against every other claimer.
        """
        due = (
            select(jobs.c.id)
            .where(jobs.c.status == OutboxJobStatus.pending, jobs.c.due_at <= now)
            .order_by(jobs.c.priority, jobs.c.due_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        if max_priority is not None:
            due = due.where(jobs.c.priority <= max_priority)
        stmt = (
            update(jobs)
            .where(jobs.c.id.in_(due.scalar_subquery()))
            .values(
                due_at=lease_until,
                claim_token=token,
                claimed_by=worker,
                claims=jobs.c.claims + 1,
                updated_at=now,
            )
            .returning(
                jobs.c.id,
                jobs.c.message_id,
                jobs.c.account_id,
                jobs.c.flow_key,
                jobs.c.quota_api,
                jobs.c.priority,
                jobs.c.attempts,
                jobs.c.claims,
            )
        )
        rows = (await session.execute(stmt)).all()
        claimed = [
            ClaimedJob(
                id=row.id,
                message_id=row.message_id,
                account_id=row.account_id,
                flow_key=row.flow_key,
                quota_api=row.quota_api,
                priority=row.priority,
                attempts=row.attempts,
                claims=row.claims,
                token=token,
            )
            for row in rows
        ]
        claimed.sort(key=lambda job: (job.priority, job.id))
        return claimed

    async def message_rows(self, session: AsyncSession, ids: list[int]) -> dict[int, Any]:
        stmt = select(messages.c.id, messages.c.status, messages.c.content, messages.c.idempotency_key).where(
            messages.c.id.in_(ids)
        )
        return {row.id: row for row in (await session.execute(stmt)).all()}

    async def release(
        self, session: AsyncSession, items: list[Release], *, token: str, now: datetime
    ) -> None:
        """Gives claimed jobs back, due again at the given times (flow control, account paused)."""
        if not items:
            return
        stmt = (
            update(jobs)
            .where(jobs.c.id == bindparam("b_id"), jobs.c.claim_token == token)
            .values(due_at=bindparam("b_due", type_=UTCDateTime()), claim_token=None, updated_at=now)
        )
        await session.execute(stmt, [{"b_id": r.job_id, "b_due": r.due_at} for r in items])

    async def finish_sent(self, session: AsyncSession, items: list[Sent], *, now: datetime) -> None:
        """Records accepted sends. The ``status = queued`` guard is what keeps a message from being
        recorded as sent twice, even if two workers both hold it after a lease ran out."""
        if not items:
            return
        await session.execute(
            update(messages)
            .where(messages.c.id == bindparam("b_mid"), messages.c.status == MessageStatus.queued)
            .values(
                status=MessageStatus.sent,
                platform_message_id=bindparam("b_pmid"),
                sent_at=now,
                error_code=None,
                error_reason=None,
            ),
            [{"b_mid": s.message_id, "b_pmid": s.platform_message_id} for s in items],
        )
        # Unconditional on the claim token: the message is sent, whoever holds the job now. One
        # statement with an id list: the per-row parameter handling of an executemany costs more.
        await session.execute(
            update(jobs)
            .where(jobs.c.id.in_([s.job_id for s in items]))
            .values(
                status=OutboxJobStatus.done,
                attempts=jobs.c.attempts + 1,
                claim_token=None,
                finished_at=now,
                updated_at=now,
            )
        )

    async def finish_without_send(self, session: AsyncSession, job_ids: list[int], *, now: datetime) -> None:
        """Jobs whose message is no longer queued (already sent, or failed by a supervisor)."""
        if not job_ids:
            return
        await session.execute(
            update(jobs)
            .where(jobs.c.id.in_(job_ids))
            .values(status=OutboxJobStatus.done, claim_token=None, finished_at=now, updated_at=now)
        )

    async def reschedule(
        self, session: AsyncSession, items: list[Retry], *, token: str, now: datetime
    ) -> None:
        """A retryable failure: one more attempt counted, due again after the backoff."""
        if not items:
            return
        await session.execute(
            update(jobs)
            .where(jobs.c.id == bindparam("b_id"), jobs.c.claim_token == token)
            .values(
                due_at=bindparam("b_due", type_=UTCDateTime()),
                attempts=jobs.c.attempts + 1,
                claim_token=None,
                last_error_code=bindparam("b_code"),
                last_error=bindparam("b_error"),
                updated_at=now,
            ),
            [{"b_id": r.job_id, "b_due": r.due_at, "b_code": r.code, "b_error": r.error} for r in items],
        )

    async def fail(self, session: AsyncSession, items: list[Failure], *, token: str, now: datetime) -> None:
        """Permanent failures and dead letters: the job stops, the message is failed with the reason."""
        if not items:
            return
        await session.execute(
            update(jobs)
            .where(jobs.c.id == bindparam("b_id"), jobs.c.claim_token == token)
            .values(
                status=bindparam("b_status"),
                attempts=jobs.c.attempts + 1,
                claim_token=None,
                last_error_code=bindparam("b_code"),
                last_error=bindparam("b_error"),
                finished_at=now,
                updated_at=now,
            ),
            [
                {"b_id": f.job_id, "b_status": f.job_status.value, "b_code": f.code, "b_error": f.reason}
                for f in items
            ],
        )
        await session.execute(
            update(messages)
            .where(messages.c.id == bindparam("b_mid"), messages.c.status == MessageStatus.queued)
            .values(
                status=MessageStatus.failed,
                error_code=bindparam("b_code"),
                error_reason=bindparam("b_error"),
                failed_at=now,
            ),
            [{"b_mid": f.message_id, "b_code": f.code, "b_error": f.reason} for f in items],
        )

    async def requeue(
        self,
        session: AsyncSession,
        *,
        now: datetime,
        job_ids: list[int] | None,
        account_id: uuid.UUID | None = None,
    ) -> int:
        """Puts failed and dead-lettered jobs back in the queue (a supervisor's retry); returns how many."""
        where: list[ColumnElement[bool]] = [jobs.c.status.in_([OutboxJobStatus.failed, OutboxJobStatus.dead])]
        if job_ids is not None:
            where.append(jobs.c.id.in_(job_ids))
        if account_id is not None:
            where.append(jobs.c.account_id == account_id)
        rows = (
            await session.execute(
                update(jobs)
                .where(*where)
                .values(
                    status=OutboxJobStatus.pending,
                    due_at=now,
                    attempts=0,
                    claim_token=None,
                    finished_at=None,
                    updated_at=now,
                )
                .returning(jobs.c.message_id)
            )
        ).all()
        message_ids = [row[0] for row in rows]
        for start in range(0, len(message_ids), 500):
            await session.execute(
                update(messages)
                .where(messages.c.id.in_(message_ids[start : start + 500]))
                .where(messages.c.status == MessageStatus.failed)
                .values(status=MessageStatus.queued, error_code=None, error_reason=None, failed_at=None)
            )
        return len(message_ids)

    # --- what the operations page shows ------------------------------------------------------

    async def depth(self, session: AsyncSession) -> list[tuple[uuid.UUID, int, int]]:
        stmt = (
            select(jobs.c.account_id, jobs.c.priority, func.count())
            .where(jobs.c.status == OutboxJobStatus.pending)
            .group_by(jobs.c.account_id, jobs.c.priority)
        )
        return [(row[0], int(row[1]), int(row[2])) for row in (await session.execute(stmt)).all()]

    async def oldest_waiting(self, session: AsyncSession) -> tuple[int, datetime] | None:
        stmt = (
            select(jobs.c.id, jobs.c.created_at)
            .where(jobs.c.status == OutboxJobStatus.pending)
            .order_by(jobs.c.id)
            .limit(1)
        )
        row = (await session.execute(stmt)).first()
        return (int(row[0]), row[1]) if row else None

    async def sent_since(self, session: AsyncSession, since: datetime) -> list[tuple[uuid.UUID, int]]:
        stmt = (
            select(jobs.c.account_id, func.count())
            .where(jobs.c.status == OutboxJobStatus.done, jobs.c.finished_at >= since)
            .group_by(jobs.c.account_id)
        )
        return [(row[0], int(row[1])) for row in (await session.execute(stmt)).all()]

    async def failures(self, session: AsyncSession) -> list[tuple[str, str, int]]:
        stmt = (
            select(jobs.c.status, jobs.c.last_error_code, func.count())
            .where(jobs.c.status.in_([OutboxJobStatus.failed, OutboxJobStatus.dead]))
            .group_by(jobs.c.status, jobs.c.last_error_code)
        )
        rows = (await session.execute(stmt)).all()
        return [(row[0], row[1] or "unknown", int(row[2])) for row in rows]

    async def dead_letters(self, session: AsyncSession, *, limit: int = 100) -> list[Any]:
        stmt = (
            select(
                jobs.c.id,
                jobs.c.status,
                jobs.c.account_id,
                jobs.c.priority,
                jobs.c.attempts,
                jobs.c.last_error_code,
                jobs.c.last_error,
                jobs.c.finished_at,
                messages.c.id.label("message_id"),
                messages.c.peer_id,
                messages.c.type,
            )
            .join(messages, messages.c.id == jobs.c.message_id)
            .where(jobs.c.status.in_([OutboxJobStatus.failed, OutboxJobStatus.dead]))
            .order_by(jobs.c.finished_at.desc(), jobs.c.id.desc())
            .limit(limit)
        )
        return list((await session.execute(stmt)).all())

    async def purge_done(self, session: AsyncSession, *, before: datetime) -> int:
        """Finished jobs are kept a while for the send-rate figures, then dropped (the message row stays)."""
        result = await session.execute(
            jobs.delete().where(and_(jobs.c.status == OutboxJobStatus.done, jobs.c.finished_at < before))
        )
        return int(getattr(result, "rowcount", 0) or 0)


outbox = OutboxRepository()
