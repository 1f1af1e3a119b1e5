from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from parley.kit.types import JSONType
from parley.models.base import TimestampMixin, UUIDModel


class ChannelAccount(TimestampMixin, UUIDModel):
    """One connected platform account (a WeChat Official Account, a WhatsApp Business account).

    ``config`` holds what may be shown again (AppID, phone number id, encryption
    mode); ``secrets_sealed`` holds the credentials, encrypted with the
    instance's secret box and never returned in full.
    """

    __tablename__ = "channel_accounts"

    type: Mapped[str] = mapped_column(String(32), nullable=False, index=True)
    name: Mapped[str] = mapped_column(String(120), nullable=False)
    api_base_url: Mapped[str] = mapped_column(String(500), nullable=False)
    # The platform's id for the account, used to find the account from a payload
    # (WeChat AppID / original id, WhatsApp phone number id).
    external_id: Mapped[str] = mapped_column(String(128), nullable=False)
    config: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict, nullable=False)
    secrets_sealed: Mapped[str] = mapped_column(Text, nullable=False)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, nullable=False)

    senders: Mapped[list[ChannelSender]] = relationship(
        back_populates="account",
        lazy="raise",
        cascade="all, delete-orphan",
        order_by="ChannelSender.created_at",
    )

    __table_args__ = (UniqueConstraint("type", "external_id", name="uq_channel_accounts_type_external_id"),)


class ChannelSender(TimestampMixin, UUIDModel):
    """A sending identity of an account: for WhatsApp, one business phone number."""

    __tablename__ = "channel_senders"
    __table_args__ = (
        UniqueConstraint("account_id", "external_id", name="uq_channel_senders_account_external"),
        Index("ix_channel_senders_account", "account_id"),
    )

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("channel_accounts.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(String(128), nullable=False)  # phone number id
    display_name: Mapped[str] = mapped_column(String(200), default="", nullable=False)
    phone_number: Mapped[str] = mapped_column(String(32), default="", nullable=False)
    is_primary: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)

    account: Mapped[ChannelAccount] = relationship(back_populates="senders", lazy="raise")
