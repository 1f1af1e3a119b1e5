from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from parley.kit.types import JSONType, UTCDateTime, utcnow
from parley.models.base import Base, BigIntPK


class InboundEvent(Base):
    """What a platform delivered, normalized; the input of the inbox pipeline.

    ``dedupe_key`` is unique per account, so a platform's retry of the same
    delivery is stored once however many times it arrives.
    """

    __tablename__ = "inbound_events"
    __table_args__ = (
        UniqueConstraint("account_id", "dedupe_key", name="uq_inbound_events_account_dedupe"),
        Index("ix_inbound_events_pending", "status", "id"),
        Index("ix_inbound_events_sender", "account_id", "sender_id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("channel_accounts.id", ondelete="CASCADE"))
    channel_type: Mapped[str] = mapped_column(String(32), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)  # message | event | status
    type: Mapped[str] = mapped_column(String(48), nullable=False)
    dedupe_key: Mapped[str] = mapped_column(String(255), nullable=False)
    platform_message_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    sender_id: Mapped[str] = mapped_column(String(255), nullable=False)  # OpenID / WhatsApp user id
    sender_unionid: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    normalized: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    raw: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(String(16), default="pending", nullable=False)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
