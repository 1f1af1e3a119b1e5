from __future__ import annotations

import uuid
from datetime import datetime
from enum import IntEnum, StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from parley.kit.types import JSONType, UTCDateTime, utcnow
from parley.models.base import Base, BigIntPK


class Direction(StrEnum):
    inbound = "in"
    outbound = "out"


class MessageStatus(StrEnum):
    received = "received"  # inbound
    queued = "queued"  # outbound, waiting in the outbox
    sent = "sent"  # the platform accepted it
    delivered = "delivered"
    read = "read"
    failed = "failed"  # permanently, with error_code / error_reason


class Priority(IntEnum):
    """Lower goes first: a running broadcast must never delay an agent's reply."""

    agent_reply = 0
    automated = 1
    notification = 2
    bulk = 3


class Message(Base):
    """One message in or out, on one channel account.

    Outbound rows are written together with their :class:`OutboxJob` in one
    transaction; the delivery workers move them to the platform. ``content``
    is the normalized form (``OutboundMessage`` or ``InboundEvent`` JSON).
    """

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("idempotency_key", name="uq_messages_idempotency_key"),
        Index("ix_messages_account_platform_id", "account_id", "platform_message_id"),
        Index("ix_messages_conversation", "conversation_id", "id"),
        Index("ix_messages_status", "status"),
        # A contact's history across conversations (the 360° timeline, merges).
        Index("ix_messages_contact_created", "contact_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("channel_accounts.id", ondelete="CASCADE"))
    # Conversations and contacts arrive with the inbox; a notification may be sent without one.
    conversation_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    contact_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    direction: Mapped[str] = mapped_column(String(3), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), default="message", nullable=False)  # message | note
    type: Mapped[str] = mapped_column(String(32), nullable=False)
    # The customer's per-account platform id: recipient when outbound, sender when inbound.
    peer_id: Mapped[str] = mapped_column(String(255), nullable=False)
    sender_external_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    text: Mapped[str | None] = mapped_column(Text, nullable=True)
    content: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    priority: Mapped[int] = mapped_column(Integer, default=Priority.agent_reply, nullable=False)
    idempotency_key: Mapped[str] = mapped_column(String(64), nullable=False)
    platform_message_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    author_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    inbound_event_id: Mapped[int | None] = mapped_column(
        ForeignKey("inbound_events.id", ondelete="SET NULL"), nullable=True
    )
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    pinned_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    pinned_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )

    @classmethod
    def note(
        cls,
        *,
        account_id: uuid.UUID,
        conversation_id: uuid.UUID,
        contact_id: uuid.UUID | None,
        text: str,
        author_id: uuid.UUID | None,
        extra: dict[str, Any] | None = None,
        created_at: datetime | None = None,
    ) -> Message:
        """An internal note in a conversation: seen by agents, never sent to the customer."""
        return cls(
            account_id=account_id,
            conversation_id=conversation_id,
            contact_id=contact_id,
            direction=Direction.outbound,
            kind="note",
            type="text",
            peer_id="",
            text=text,
            content={"text": text, **(extra or {})},
            status=MessageStatus.sent,
            priority=Priority.agent_reply,
            idempotency_key=uuid.uuid4().hex,
            author_id=author_id,
            created_at=created_at or utcnow(),
        )
