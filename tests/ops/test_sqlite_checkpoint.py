"""WAL checkpoints on their own thread: the log's pages reach the database file without a commit doing it."""

from __future__ import annotations

import sqlite3
import time

from parley.kit.sqlite_checkpoint import Checkpointer


def _fill(path: str) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA wal_autocheckpoint=0")  # as if no commit ever checkpointed
    connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
    connection.executemany("INSERT INTO t (body) VALUES (?)", [("x" * 500,) for _ in range(2000)])
    return connection


def test_checkpoints_copy_the_log_into_the_database_file(tmp_path):
    path = str(tmp_path / "db.sqlite")
    writer = _fill(path)
    before = (tmp_path / "db.sqlite").stat().st_size
    checkpointer = Checkpointer(interval_s=0.05)
    checkpointer.register(path)
    try:
        deadline = time.monotonic() + 10
        while (tmp_path / "db.sqlite").stat().st_size <= before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (tmp_path / "db.sqlite").stat().st_size > before + 500 * 1000
        assert writer.execute("SELECT count(*) FROM t").fetchone() == (2000,)
    finally:
        checkpointer.unregister(path)
        writer.close()


def test_the_thread_ends_when_the_last_engine_goes(tmp_path):
    path = str(tmp_path / "db.sqlite")
    _fill(path).close()
    checkpointer = Checkpointer(interval_s=0.01)
    checkpointer.register(path)
    checkpointer.register(path)
    checkpointer.unregister(path)
    thread = checkpointer._thread
    assert thread is not None and thread.is_alive()
    checkpointer.unregister(path)
    thread.join(5)
    assert not thread.is_alive()


def test_a_database_that_disappears_is_skipped(tmp_path):
    checkpointer = Checkpointer(interval_s=0.01)
    checkpointer.register(str(tmp_path / "missing" / "db.sqlite"))
    checkpointer.checkpoint_all()  # logged, not raised
    checkpointer.unregister(str(tmp_path / "missing" / "db.sqlite"))


def test_engines_come_and_go_while_checkpoints_run(tmp_path):
    """Registering and unregistering from other threads never closes a connection in use."""
    import threading

    paths = []
    for n in range(8):
        path = str(tmp_path / f"db{n}.sqlite")
        _fill(path).close()
        paths.append(path)
    checkpointer = Checkpointer(interval_s=0.001)

    def churn(path: str) -> None:
        for _ in range(200):
            checkpointer.register(path)
            with sqlite3.connect(path) as writer:
                writer.execute("INSERT INTO t (body) VALUES ('y')")
            checkpointer.unregister(path)

    threads = [threading.Thread(target=churn, args=(p,)) for p in paths]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not checkpointer._users
    assert not checkpointer._connections
