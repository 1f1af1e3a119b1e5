"""The delivery outbox and the flow-control state every worker process shares.

An :class:`OutboxJob` is written in the same transaction as its outbound
:class:`~parley.models.message.Message`, so a committed message always has a
job and a rolled-back one never does. Workers claim due jobs by moving their
``due_at`` to the end of a lease: a claimed job that is neither finished nor
released becomes due again when its worker's lease runs out.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from parley.kit.types import JSONType, UTCDateTime, utcnow
from parley.models.base import Base, BigIntPK


class OutboxJobStatus(StrEnum):
    pending = "pending"  # waiting for due_at, or claimed until due_at (the lease)
    done = "done"  # the platform accepted the message (or it needed no send)
    failed = "failed"  # permanent platform error; the message is failed
    dead = "dead"  # retryable errors until the attempt limit: dead-lettered


class OutboxJob(Base):
    __tablename__ = "outbox_jobs"
    __table_args__ = (
        # The claim query walks this: only pending rows, in (priority, due_at) order. ``status`` leads
        # although every row has the same one: otherwise SQLite answers the claim's ``status = ?`` from
        # ix_outbox_jobs_status_account and sorts all pending rows for every batch.
        Index(
            "ix_outbox_jobs_claim",
            "status",
            "priority",
            "due_at",
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_outbox_jobs_status_account", "status", "account_id"),
        Index(
            "ix_outbox_jobs_finished",
            "finished_at",
            sqlite_where=text("status = 'done'"),
            postgresql_where=text("status = 'done'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), unique=True, nullable=False
    )
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("channel_accounts.id", ondelete="CASCADE"), nullable=False
    )
    # Token bucket this send draws from: the account, or account + sending number (WhatsApp).
    flow_key: Mapped[str] = mapped_column(String(200), nullable=False)
    # Daily quota it counts against (WeChat "custom_send", "template_send"…); None when unmetered.
    quota_api: Mapped[str | None] = mapped_column(String(64), nullable=True)
    priority: Mapped[int] = mapped_column(Integer, nullable=False)
    status: Mapped[str] = mapped_column(String(16), default=OutboxJobStatus.pending, nullable=False)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    # Sends that reached the adapter (a flow-control deferral is not an attempt).
    attempts: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    claims: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    # Set on each claim: only the holder of the current claim may finish or release the job.
    claim_token: Mapped[str | None] = mapped_column(String(32), nullable=True)
    claimed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    last_error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class DeliveryLimit(Base):
    """Per-account overrides of the adapter's rate and daily quotas (null: the adapter's default)."""

    __tablename__ = "delivery_limits"

    account_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("channel_accounts.id", ondelete="CASCADE"), primary_key=True
    )
    rate_per_s: Mapped[float | None] = mapped_column(Float, nullable=True)  # 0 = unlimited
    burst: Mapped[float | None] = mapped_column(Float, nullable=True)
    daily_quotas: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)


class FlowBucket(Base):
    """One token bucket (database flow backend). Times are Unix seconds, shared by all processes."""

    __tablename__ = "flow_buckets"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float, nullable=False)
    updated_at: Mapped[float] = mapped_column(Float, nullable=False)
    # Priority → the time up to which deferred sends of that priority are already spread.
    deferred_until: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict, nullable=False)


class FlowQuotaUsage(Base):
    """Calls made against one daily quota in one quota day (database flow backend)."""

    __tablename__ = "flow_quota_usage"

    account_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    api: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[str] = mapped_column(String(16), primary_key=True)  # the quota day, in the platform's zone
    used: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
