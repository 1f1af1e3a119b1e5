"""Delivery fixtures: a real WhatsApp simulator process, and a Parley context on the test database."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from parley.config import Settings
from parley.context import Context, build_context
from tests.fixtures.browser import ServerProcess, free_port, server_env


@contextlib.contextmanager
def _simulator(tmp: Path) -> Iterator[str]:
    port = free_port()
    env = server_env("sqlite+aiosqlite:///" + str(tmp / "unused.db"), tmp)
    sim = ServerProcess(
        ["sandbox", "whatsapp", "--port", str(port)], env, tmp / "whatsapp-sim.log", port
    ).start(ready_path="/_sandbox/state")
    try:
        yield sim.url
    finally:
        sim.stop()


@pytest.fixture(scope="session")
def whatsapp_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One simulator for the session; every test registers its own account (own phone number id)."""
    with _simulator(tmp_path_factory.mktemp("sim")) as url:
        yield url


@pytest.fixture
def fresh_whatsapp_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A simulator of the test's own, for rate measurements: the shared one carries earlier tests' work."""
    with _simulator(tmp_path_factory.mktemp("sim")) as url:
        yield url


@pytest.fixture
async def ctx(settings: Settings) -> AsyncIterator[Context]:
    context = build_context(settings)
    try:
        yield context
    finally:
        await context.close()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
