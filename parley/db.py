"""Database engines and sessions: SQLite (WAL) by default, PostgreSQL for scale."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NewType

import structlog
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.pool import ConnectionPoolEntry

from parley.kit import sqlite_checkpoint, sqlite_inline

log = structlog.get_logger()

AsyncReadSession = NewType("AsyncReadSession", AsyncSession)


SQLITE_BEGIN = "parley_sqlite_begin"


_WRITE_LOCKS: weakref.WeakKeyDictionary[Engine, asyncio.Lock] = weakref.WeakKeyDictionary()
_OWNERS: weakref.WeakKeyDictionary[asyncio.Lock, asyncio.Task[Any] | None] = weakref.WeakKeyDictionary()
_HELD = "parley.sqlite_write_lock"


async def begin_write(session: AsyncSession) -> None:
    """Starts the session's transaction as a writer.

    On SQLite a deferred transaction that reads and then writes fails at once
    (SQLITE_BUSY_SNAPSHOT) if another connection wrote in between; taking the
    write lock up front makes concurrent writers queue instead. Within this
    process they queue on an asyncio lock, first come first served, handed
    over the moment the holder's transaction ends; other processes are waited
    for by ``parley.kit.sqlite_inline``. Readers are unaffected (WAL).
    No-op on PostgreSQL.
    """
    bind = session.get_bind()
    if bind.dialect.name != "sqlite" or session.in_transaction():
        return
    engine = bind if isinstance(bind, Engine) else bind.engine
    lock = _WRITE_LOCKS.setdefault(engine, asyncio.Lock())
    task = asyncio.current_task()
    if lock.locked() and _OWNERS.get(lock) is task:
        # SQLite has one writer; a second write transaction in the same task can only wait for itself.
        raise RuntimeError("nested write transaction on SQLite: finish the outer one before writing again")
    await lock.acquire()
    _OWNERS[lock] = task
    session.sync_session.info[_HELD] = lock
    try:
        await session.connection(execution_options={SQLITE_BEGIN: "IMMEDIATE"})
    except BaseException:
        _release(session.sync_session)
        raise


def writing_in_this_task(maker: async_sessionmaker[AsyncSession]) -> bool:
    """Whether this task already holds SQLite's write lock (so another write session here would deadlock)."""
    bind = maker.kw.get("bind")
    engine = bind.sync_engine if isinstance(bind, AsyncEngine) else bind
    lock = _WRITE_LOCKS.get(engine) if isinstance(engine, Engine) else None
    return lock is not None and lock.locked() and _OWNERS.get(lock) is asyncio.current_task()


def _release(sync_session: Session) -> None:
    lock: asyncio.Lock | None = sync_session.info.pop(_HELD, None)
    if lock is not None and lock.locked():
        _OWNERS.pop(lock, None)
        lock.release()


@event.listens_for(Session, "after_transaction_end")
def _release_write_lock(sync_session: Session, transaction: SessionTransaction) -> None:
    # Commit, rollback or close: whichever ends the outermost transaction frees the next writer.
    if transaction.parent is None:
        _release(sync_session)


def _sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # pysqlite's own transaction handling breaks SAVEPOINT and issues BEGIN
    # lazily; we take over (see the "begin" listener and begin_write()).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # Checkpoints run on a thread of their own (parley.kit.sqlite_checkpoint); this is the safety net.
    cursor.execute(f"PRAGMA wal_autocheckpoint={sqlite_checkpoint.SAFETY_NET_PAGES}")
    cursor.execute("PRAGMA foreign_keys=ON")
    # Zero: waiting for a lock happens in parley.kit.sqlite_inline, off the event loop's back.
    cursor.execute("PRAGMA busy_timeout=0")
    # SQLite's default page cache is 2 MB: with a million contacts every index probe of a
    # segment count would be a read() system call. 64 MB of cache per connection and the
    # file memory-mapped (read-only access, shared with the OS page cache) make them memory reads.
    cursor.execute("PRAGMA cache_size=-65536")
    cursor.execute("PRAGMA mmap_size=1073741824")
    cursor.close()


def create_engine(url: str, *, echo: bool = False, pool_size: int = 10) -> AsyncEngine:
    """Creates the async engine for ``url``, with SQLite tuned for durable concurrent use."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url, echo=echo, async_creator=sqlite_inline.creator(parsed.database or ":memory:")
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        if parsed.database and parsed.database != ":memory:":
            path = str(Path(parsed.database).resolve())
            sqlite_checkpoint.checkpointer.register(path)
            # Once, when the engine is disposed or, failing that, garbage-collected.
            stop = weakref.finalize(engine.sync_engine, sqlite_checkpoint.checkpointer.unregister, path)
            event.listen(engine.sync_engine, "engine_disposed", lambda _engine: stop())

        @event.listens_for(engine.sync_engine, "begin")
        def _begin(conn: Any) -> None:
            mode = conn.get_execution_options().get(SQLITE_BEGIN, "DEFERRED")
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine
    return create_async_engine(
        url, echo=echo, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


OnCommit = Callable[[], Awaitable[None]]
_ON_COMMIT = "parley.on_commit"


def on_commit(session: AsyncSession, callback: OnCommit) -> None:
    """Runs ``callback`` after the session's transaction commits, and never if it rolls back.

    Side effects (realtime pushes, wake-ups of workers) go through here so that
    nobody is told about a row that does not exist.
    """
    session.info.setdefault(_ON_COMMIT, []).append(callback)


async def commit(session: AsyncSession) -> None:
    """Commits and then runs the callbacks registered with :func:`on_commit`."""
    await session.commit()
    callbacks: list[OnCommit] = session.info.pop(_ON_COMMIT, [])
    for callback in callbacks:
        try:
            await callback()
        except Exception:
            log.exception("on_commit.failed", callback=getattr(callback, "__qualname__", repr(callback)))


def rollback_callbacks(session: AsyncSession) -> None:
    session.info.pop(_ON_COMMIT, None)


_SAVEPOINT_LISTS = "parley.savepoint_lists"


def transaction_list(session: AsyncSession, key: str) -> list[Any]:
    """A list kept in ``session.info`` under ``key`` for work written when the transaction commits.

    A :func:`savepoint` that rolls back takes back what was appended to it inside the savepoint,
    as it does for :func:`on_commit` callbacks.
    """
    found: list[Any] | None = session.info.get(key)
    if found is None:
        found = session.info[key] = []
        session.info.setdefault(_SAVEPOINT_LISTS, set()).add(key)
    return found


@asynccontextmanager
async def savepoint(session: AsyncSession, *, keep: tuple[type, ...] = ()) -> AsyncIterator[None]:
    """A nested transaction whose :func:`on_commit` callbacks and objects are dropped with it when it rolls back.

    (A bare ``begin_nested()`` would keep them, and announce rows that were never committed.)
    """
    mark = len(session.info.get(_ON_COMMIT, ()))
    lists = {key: len(session.info.get(key, ())) for key in session.info.get(_SAVEPOINT_LISTS, ())}
    # States, not identity keys: a key hashes its UUIDs in Python, six times slower for a group's few
    # hundred objects, and this runs several times per webhook.
    before = set(session.sync_session.identity_map.all_states())
    try:
        async with session.begin_nested():
            yield
    except BaseException:
        del session.info.get(_ON_COMMIT, [])[mark:]
        for key in session.info.get(_SAVEPOINT_LISTS, ()):
            del session.info.get(key, [])[lists.get(key, 0) :]
        _forget_savepoint_objects(session, before, keep)
        raise


def _forget_savepoint_objects(session: AsyncSession, before: set[Any], keep: tuple[type, ...]) -> None:
    """Drops what a rolled-back savepoint loaded or created, and expires what it may have changed.

    The ORM undoes only the changes it flushed itself; rows written with Core statements
    (``parley.kit.rows``) keep their rolled-back values in the session's objects, and a
    row id SQLite hands out again would otherwise find the old object. Objects of the
    ``keep`` types (read, never written, inside the savepoint) stay loaded for the caller.
    """
    sync = session.sync_session
    for state in sync.identity_map.all_states():
        obj = state.obj()
        if obj is None:
            continue
        if state not in before:
            sync.expunge(obj)
        elif not isinstance(obj, keep):
            sync.expire(obj)


@asynccontextmanager
async def session_scope(
    maker: async_sessionmaker[AsyncSession], *, write: bool = True
) -> AsyncIterator[AsyncSession]:
    """A session that commits (then runs on-commit callbacks) on success and rolls back on error."""
    async with maker() as session:
        if write:
            await begin_write(session)
        try:
            yield session
        except BaseException:
            rollback_callbacks(session)
            await session.rollback()
            raise
        await commit(session)
