"""Per-process caches of configuration that every inbound event reads (rules, settings).

Reading them from the database on every event cost more than handling the event
itself. The staleness contract, recorded in docs/decisions/0010-config-cache.md:

* in the process that changes a setting, the change is seen at once: the admin
  service calls :meth:`ConfigCache.changed`, which drops the cache now and
  again when its transaction commits, and makes that session read afresh
  meanwhile (so its own uncommitted change is never cached for others);
* other processes see it within :data:`TTL_S`, when their entry expires.

Entries are kept per database engine, so two databases in one process (tests,
tools) never see each other's configuration.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from parley.db import on_commit

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# How long another process may act on configuration that has since changed.
TTL_S = 1.0

_FRESH = "parley.config_cache.fresh"


def _engine_of(session: AsyncSession) -> Any:
    # The session's own engine when it has one: AsyncSession.get_bind() works it out anew on every
    # call, which cost more than the rest of a cached read and runs several times per inbound event.
    return session.bind or session.get_bind()


class ConfigCache(Generic[K, V]):
    def __init__(self, name: str, *, ttl_s: float = TTL_S) -> None:
        self.name = name
        self.ttl_s = ttl_s
        self._entries: weakref.WeakKeyDictionary[Any, dict[K, tuple[float, V]]] = weakref.WeakKeyDictionary()
        # The last engine asked about and its entries: a WeakKeyDictionary lookup makes a weak
        # reference each time, and a process nearly always asks about the same engine.
        self._last: tuple[weakref.ref[Any], dict[K, tuple[float, V]]] | None = None
        # Bumped by every invalidation: a load that started before it must not store what it read.
        self._generation = 0

    async def get(self, session: AsyncSession, key: K, load: Callable[[], Awaitable[V]]) -> V:
        """The cached value, or ``load()``'s (stored unless the configuration changed meanwhile)."""
        if self.name in session.info.get(_FRESH, ()):
            return await load()
        engine = _engine_of(session)
        entries = self._entries_of(engine)
        now = time.monotonic()
        if entries is not None:
            hit = entries.get(key)
            if hit is not None and hit[0] > now:
                return hit[1]
        generation = self._generation
        value = await load()
        if generation == self._generation:
            if entries is None:
                entries = self._entries.setdefault(engine, {})
                self._last = (weakref.ref(engine), entries)
            entries[key] = (now + self.ttl_s, value)
        return value

    def _entries_of(self, engine: Any) -> dict[K, tuple[float, V]] | None:
        last = self._last
        if last is not None and last[0]() is engine:
            return last[1]
        entries = self._entries.get(engine)
        if entries is not None:
            self._last = (weakref.ref(engine), entries)
        return entries

    def peek(self, session: AsyncSession, key: K) -> V | None:
        """The cached value even if expired (for a cheap freshness check before rebuilding), or None."""
        entries = self._entries_of(_engine_of(session))
        hit = entries.get(key) if entries is not None else None
        return hit[1] if hit is not None else None

    def invalidate(self) -> None:
        self._generation += 1
        self._entries.clear()
        self._last = None

    def changed(self, session: AsyncSession) -> None:
        """The session changed this configuration: drop it now, read it afresh there, drop it again on commit."""
        self.invalidate()
        fresh: set[str] = session.info.setdefault(_FRESH, set())
        if self.name in fresh:
            return
        fresh.add(self.name)

        async def committed() -> None:
            fresh.discard(self.name)
            self.invalidate()

        on_commit(session, committed)
