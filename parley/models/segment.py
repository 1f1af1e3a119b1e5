from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from parley.kit.types import JSONType
from parley.models.base import TimestampMixin, UUIDModel


class Segment(TimestampMixin, UUIDModel):
    """A saved filter over contacts; ``definition`` is a validated ``parley.contacts.segments.Filter``."""

    __tablename__ = "segments"

    name: Mapped[str] = mapped_column(String(200), unique=True, nullable=False)
    description: Mapped[str] = mapped_column(String(1000), default="", nullable=False)
    definition: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
