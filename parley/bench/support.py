"""Shared plumbing for benchmarks: temporary databases, server subprocesses, percentiles."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

BENCH_SECRET = "bench-secret-key-not-for-production-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class Workspace:
    directory: Path
    database_url: str

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "PARLEY_ENV": "testing",
                "PARLEY_DATABASE_URL": self.database_url,
                "PARLEY_DATA_DIR": str(self.directory),
                "PARLEY_SECRET_KEY": BENCH_SECRET,
                "PARLEY_LOG_LEVEL": "WARNING",
                "PARLEY_LOG_JSON": "true",
            }
        )
        env.update(extra)
        return env


@contextlib.contextmanager
def workspace(database_url: str | None = None) -> Iterator[Workspace]:
    """A temporary directory and database (SQLite unless a URL is given), removed afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="parley-bench-"))
    try:
        yield Workspace(directory, database_url or f"sqlite+aiosqlite:///{directory / 'bench.db'}")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def cpu_seconds(pid: int, *, main_thread: bool = False) -> float | None:
    """CPU seconds (user + system) a process has used so far; None where /proc is not available.

    ``main_thread``: its main thread's alone, the event loop's in a server, which bounds its rate
    (helper threads, such as SQLite's checkpoints, run on other cores).
    """
    try:
        stat = f"/proc/{pid}/task/{pid}/stat" if main_thread else f"/proc/{pid}/stat"
        fields = Path(stat).read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Process:
    """A ``python -m …`` subprocess that is stopped when the benchmark ends."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path, port: int | None = None) -> None:
        self.args, self.env, self.log, self.port = args, env, log, port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_path: str | None = "/healthz", timeout_s: float = 60) -> Process:
        """Starts the process and, when it has a port and ``ready_path``, waits until that answers 200."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", *self.args], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        if not (self.port and ready_path):
            return self
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{' '.join(self.args)} exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + ready_path, timeout=1).status_code == 200:
                    return self
            time.sleep(0.1)
        raise RuntimeError(f"{' '.join(self.args)} did not start: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL: no cleanup, as a crash would leave things."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
