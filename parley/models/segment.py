from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from parley.kit.types import JSONType, UTCDateTime, utcnow
from parley.models.base import Base, TimestampMixin, UUIDModel


class Segment(TimestampMixin, UUIDModel):
    """A saved filter over contacts; ``definition`` is a validated ``parley.contacts.segments.Filter``."""

    __tablename__ = "segments"

    name: Mapped[str] = mapped_column(String(200), unique=True, nullable=False)
    description: Mapped[str] = mapped_column(String(1000), default="", nullable=False)
    definition: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )


class ContactMerge(UUIDModel):
    """One merge of ``source`` into ``target``, with what moved, so that it can be undone."""

    __tablename__ = "contact_merges"

    source_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), index=True)
    target_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), index=True)
    reason: Mapped[str] = mapped_column(String(200), default="", nullable=False)
    record: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    merged_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    undone_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    undone_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )


class ContactAttributeValue(Base):
    """Custom attribute values of contacts, one row per value, for segment counts.

    Kept by database triggers on ``contacts`` (see the migration), so every writer,
    import and bulk update included, keeps it right without knowing it exists. The
    contact's JSON ``attributes`` stays the source of truth; this is an index of it:
    ``(key, value, contact_id)`` answers "tier = gold" and "interests has tea", and
    ``(key, num_value, contact_id)`` numeric ranges, from the index alone. Text is
    indexed on its first 200 characters; booleans are not indexed (filtered per row).
    """

    __tablename__ = "contact_attribute_values"
    __table_args__ = (
        Index("ix_contact_attribute_values_key_value", "key", "value", "contact_id"),
        Index("ix_contact_attribute_values_key_num", "key", "num_value", "contact_id"),
    )

    contact_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(200), primary_key=True)
    num_value: Mapped[float | None] = mapped_column(Float, nullable=True)
