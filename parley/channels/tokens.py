"""Platform access tokens kept in the database, shared by every Parley process."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from parley.db import session_scope
from parley.kit.crypto import SecretBox
from parley.models import PlatformToken


class DatabaseTokenStore:
    """Implements :class:`parley.channels.base.TokenStore` on the ``platform_tokens`` table.

    Each call uses its own short transaction so that a token fetched by one
    process is visible to all the others at once.
    """

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], box: SecretBox) -> None:
        self._sessionmaker = sessionmaker
        self._box = box

    async def get(self, account_id: str, kind: str) -> tuple[str, datetime] | None:
        async with session_scope(self._sessionmaker) as session:
            row = await session.get(PlatformToken, (uuid.UUID(account_id), kind))
            if row is None:
                return None
            return self._box.open(row.value_sealed)["v"], row.expires_at

    async def put(self, account_id: str, kind: str, value: str, expires_at: datetime) -> None:
        async with session_scope(self._sessionmaker) as session:
            row = await session.scalar(
                select(PlatformToken)
                .where(PlatformToken.account_id == uuid.UUID(account_id), PlatformToken.kind == kind)
                .with_for_update()
            )
            sealed = self._box.seal({"v": value})
            if row is None:
                session.add(
                    PlatformToken(
                        account_id=uuid.UUID(account_id),
                        kind=kind,
                        value_sealed=sealed,
                        expires_at=expires_at,
                    )
                )
            else:
                row.value_sealed = sealed
                row.expires_at = expires_at
                row.version += 1
