from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from parley.kit.types import JSONType, UTCDateTime, utcnow
from parley.models.base import Base, TimestampMixin, UUIDModel


class ContactReason(TimestampMixin, UUIDModel):
    """Why the customer got in touch: a tree the administrator defines, picked when closing (seed 001)."""

    __tablename__ = "contact_reasons"

    parent_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("contact_reasons.id", ondelete="CASCADE"), nullable=True, index=True
    )
    name: Mapped[str] = mapped_column(String(120), nullable=False)
    position: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, nullable=False)


class CannedResponse(TimestampMixin, UUIDModel):
    """A saved reply an agent inserts with ``/shortcut`` in the composer."""

    __tablename__ = "canned_responses"

    shortcut: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    title: Mapped[str] = mapped_column(String(200), default="", nullable=False)
    body: Mapped[str] = mapped_column(Text, nullable=False)
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )


class AppSetting(Base):
    """Instance-wide settings that administrators change at run time (e.g. the idle auto-close time)."""

    __tablename__ = "app_settings"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[Any] = mapped_column(JSONType, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow, nullable=False)
