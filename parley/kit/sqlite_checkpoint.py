"""WAL checkpoints for SQLite databases, on a thread of their own instead of inside commits.

By default SQLite checkpoints inside the commit that takes the write-ahead log past
1,000 pages: that commit copies the log's pages back into the database file. With
parley's connections on the event loop (docs/decisions/0003-sqlite-inline.md) the
copying ran on the loop too, a few percent of the CPU of every inbound webhook. Here
one daemon thread runs ``PRAGMA wal_checkpoint(PASSIVE)`` for each open database
every :data:`INTERVAL_S`; sqlite3 releases the GIL while SQLite copies, so that work
goes to another core. A passive checkpoint never waits for readers or writers.

The connections keep an automatic checkpoint at :data:`SAFETY_NET_PAGES`, so the log
stays bounded even if this thread could not keep up.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from urllib.parse import quote

import structlog

log = structlog.get_logger()

INTERVAL_S = 0.5
SAFETY_NET_PAGES = 20_000


class Checkpointer:
    def __init__(self, interval_s: float = INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._users: dict[str, int] = {}
        self._connections: dict[str, sqlite3.Connection] = {}
        # The log's modification time when each database was last checkpointed.
        self._seen: dict[str, int] = {}
        self._thread: threading.Thread | None = None

    def register(self, path: str) -> None:
        """One more engine uses the database at ``path``; checkpoints start if they had not."""
        with self._lock:
            self._users[path] = self._users.get(path, 0) + 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="parley-sqlite-checkpoint", daemon=True
                )
                self._thread.start()

    def unregister(self, path: str) -> None:
        """An engine using ``path`` was disposed; the last one's checkpoint connection is closed."""
        with self._lock:
            left = self._users.get(path, 0) - 1
            if left > 0:
                self._users[path] = left
                return
            self._users.pop(path, None)
            self._seen.pop(path, None)
            connection = self._connections.pop(path, None)
            if connection is not None:
                # Under the lock: the thread may be about to use this very connection.
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
                connection.close()

    def checkpoint_all(self) -> None:
        """Checkpoints each registered database whose log was written since the last look."""
        with self._lock:
            paths = list(self._users)
        for path in paths:
            try:
                written = os.stat(f"{path}-wal").st_mtime_ns
            except OSError:
                written = None
            if written is None or self._seen.get(path) == written:
                continue  # no log (yet, or any more), or nothing new in it: no need to open anything
            try:
                # Held while the connection is used, so that unregister() never closes it under us.
                with self._lock:
                    connection = self._connections.get(path)
                    if connection is None and path in self._users:
                        # mode=rw: a database deleted meanwhile is not created anew, empty.
                        connection = self._connections[path] = sqlite3.connect(
                            f"file:{quote(path)}?mode=rw",
                            uri=True,
                            isolation_level=None,
                            check_same_thread=False,
                            timeout=0,
                        )
                    if connection is not None:
                        connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
                        self._seen[path] = written
            except sqlite3.Error as exc:
                # Busy, or the database went away (a test's temporary file): the next tick tries again.
                log.debug("sqlite.checkpoint_failed", path=path, error=str(exc))

    def _run(self) -> None:
        while True:
            time.sleep(self.interval_s)
            started = time.monotonic()
            self.checkpoint_all()
            with self._lock:
                if not self._users:
                    self._thread = None
                    return
            # Never more than half of a core, however slow the checkpoints get.
            time.sleep(min(time.monotonic() - started, self.interval_s))


checkpointer = Checkpointer()
