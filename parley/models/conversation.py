from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from parley.kit.types import UTCDateTime
from parley.models.base import TimestampMixin, UUIDModel


class ConversationStatus(StrEnum):
    open = "open"
    pending = "pending"  # waiting on the customer
    snoozed = "snoozed"  # hidden until snoozed_until
    resolved = "resolved"


class Conversation(TimestampMixin, UUIDModel):
    """A contact's conversation on one channel account: the agent's stateful session over stateless chat."""

    __tablename__ = "conversations"
    __table_args__ = (
        # At most one unresolved conversation per contact and account, even with
        # two nodes receiving the contact's first messages at the same moment.
        Index(
            "uq_conversations_active",
            "contact_id",
            "account_id",
            unique=True,
            sqlite_where=text("status != 'resolved'"),
            postgresql_where=text("status != 'resolved'"),
        ),
        Index("ix_conversations_status_last", "status", "last_message_at"),
        Index("ix_conversations_assignee", "assignee_id", "status"),
        Index("ix_conversations_contact", "contact_id", "last_message_at"),
    )

    contact_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("channel_accounts.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default=ConversationStatus.open, nullable=False)
    snoozed_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    assignee_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    team_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("teams.id", ondelete="SET NULL"), nullable=True
    )
    priority: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    last_inbound_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_outbound_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_message_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_message_preview: Mapped[str] = mapped_column(String(200), default="", nullable=False)
    unread_count: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    resolved_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    contact_reason_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("contact_reasons.id", ondelete="SET NULL"), nullable=True
    )
