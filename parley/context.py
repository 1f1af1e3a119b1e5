"""What a running Parley process holds: settings, database, secrets box."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from parley.config import Settings
from parley.db import create_engine, create_sessionmaker
from parley.kit.crypto import SecretBox


@dataclass
class Context:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    secret_box: SecretBox
    # Later parts (event bus, delivery wake-ups) hang their process-wide objects here.
    extras: dict[str, Any] = field(default_factory=dict)
    on_close: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def close(self) -> None:
        for callback in reversed(self.on_close):
            await callback()
        await self.engine.dispose()


def build_context(settings: Settings) -> Context:
    engine = create_engine(settings.database_url)
    return Context(
        settings=settings,
        engine=engine,
        sessionmaker=create_sessionmaker(engine),
        secret_box=SecretBox(settings.resolved_secret_key()),
    )
