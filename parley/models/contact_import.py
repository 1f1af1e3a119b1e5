"""Contact imports (CSV/XLSX files) and WeChat follower syncs: jobs that survive a crash.

Both are worked by a background loop in batches. Each batch commits its
contacts together with the job's cursor (rows done, or ``next_openid``), and a
worker holds a job only through a lease (``lease_until``): when a worker dies
the lease runs out and another one carries on from the cursor. Redoing a batch
changes nothing because every write is an upsert on the chosen key.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from parley.kit.types import JSONType, UTCDateTime
from parley.models.base import Base, BigIntPK, TimestampMixin, UUIDModel
from parley.models.contact import Contact


class ImportStatus(StrEnum):
    mapping = "mapping"  # uploaded; waiting for a person to map the columns and choose the key
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"  # the file itself could not be read; rows are never a reason to fail
    cancelled = "cancelled"

    @classmethod
    def active(cls) -> tuple[str, ...]:
        return (cls.queued.value, cls.running.value)


class ContactImport(TimestampMixin, UUIDModel):
    __tablename__ = "contact_imports"
    __table_args__ = (Index("ix_contact_imports_status", "status"),)

    created_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    filename: Mapped[str] = mapped_column(String(255), nullable=False)
    format: Mapped[str] = mapped_column(String(8), nullable=False)  # csv | xlsx
    size_bytes: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    headers: Mapped[list[str]] = mapped_column(JSONType, default=list, nullable=False)
    # A few first rows, for the mapping screen.
    sample: Mapped[list[list[str]]] = mapped_column(JSONType, default=list, nullable=False)
    # One target per column, in column order: "" (skip), a standard field, "attr:<key>", "tags",
    # "wechat_openid", "wechat_unionid".
    mapping: Mapped[list[str]] = mapped_column(JSONType, default=list, nullable=False)
    # What identifies a contact: "phone", "email", "wechat_unionid", "wechat_openid" (with the
    # account) or "attr:<key>" (an external id kept as an identity).
    key: Mapped[str] = mapped_column(String(80), default="", nullable=False)
    key_account_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("channel_accounts.id", ondelete="SET NULL"), nullable=True
    )
    status: Mapped[str] = mapped_column(String(16), default=ImportStatus.mapping.value, nullable=False)
    total_rows: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    processed_rows: Mapped[int] = mapped_column(Integer, default=0, nullable=False)  # the resume cursor
    created_count: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    updated_count: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    unchanged_count: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    rejected_count: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Who holds the lease: every batch commit checks it, so a worker whose lease ran out stops.
    lease_token: Mapped[str] = mapped_column(String(32), default="", nullable=False)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ContactImportFile(Base):
    """The uploaded bytes, in the database so that any node's worker can read them."""

    __tablename__ = "contact_import_files"

    import_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("contact_imports.id", ondelete="CASCADE"), primary_key=True
    )
    content: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)


class ContactImportRejection(Base):
    """Why one row was not imported: one row here per bad cell (or one for the whole row)."""

    __tablename__ = "contact_import_rejections"
    __table_args__ = (Index("ix_contact_import_rejections_import_row", "import_id", "row_number"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    import_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contact_imports.id", ondelete="CASCADE"))
    row_number: Mapped[int] = mapped_column(Integer, nullable=False)  # as a spreadsheet shows it
    column: Mapped[str] = mapped_column(String(255), default="", nullable=False)
    value: Mapped[str] = mapped_column(String(500), default="", nullable=False)
    reason: Mapped[str] = mapped_column(String(500), nullable=False)


class SyncStatus(StrEnum):
    queued = "queued"
    running = "running"  # walking the follower list
    profiles = "profiles"  # list walked; waiting for the profile fetcher to finish
    waiting_quota = "waiting_quota"  # the platform's daily quota is used up: resumes at the reset
    done = "done"
    failed = "failed"
    cancelled = "cancelled"

    @classmethod
    def active(cls) -> tuple[str, ...]:
        return (cls.queued.value, cls.running.value, cls.profiles.value, cls.waiting_quota.value)


class FollowerSync(TimestampMixin, UUIDModel):
    """Bringing every follower of a WeChat account in as a contact."""

    __tablename__ = "follower_syncs"
    __table_args__ = (Index("ix_follower_syncs_status_due", "status", "due_at"),)

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("channel_accounts.id", ondelete="CASCADE"))
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    status: Mapped[str] = mapped_column(String(16), default=SyncStatus.queued.value, nullable=False)
    # The cursor: the next page starts after this OpenID ("" = the first page).
    next_openid: Mapped[str] = mapped_column(String(128), default="", nullable=False)
    pages: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    total_followers: Mapped[int] = mapped_column(Integer, default=0, nullable=False)  # as the platform says
    followers_seen: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    contacts_created: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    profiles_total: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    profiles_fetched: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    lease_token: Mapped[str] = mapped_column(String(32), default="", nullable=False)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict, nullable=False)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


# Imports keyed by email find contacts that have an address but no email identity yet (added by a
# form before identities were kept) through this index, instead of scanning every contact per batch.
Index("ix_contacts_email_lower", func.lower(Contact.__table__.c.email))
