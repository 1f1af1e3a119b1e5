from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from parley.kit.types import UTCDateTime, utcnow
from parley.models.base import Base


class PlatformToken(Base):
    """A platform access token shared by every process (WeChat's access_token lives 2 hours).

    Kept in the database so that all nodes use one token instead of each
    fetching its own and invalidating the others'. ``version`` lets a refresher
    replace it with a compare-and-set.
    """

    __tablename__ = "platform_tokens"

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("channel_accounts.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(32), primary_key=True, default="access_token")
    value_sealed: Mapped[str] = mapped_column(Text, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    version: Mapped[int] = mapped_column(Integer, default=1, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow, nullable=False)
