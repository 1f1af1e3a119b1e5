"""Shared fixtures: every database test runs on SQLite and, when configured, on PostgreSQL.

The schema is built with the migrations (never ``create_all``), once per
backend; each test then gets an empty database: a fresh copy of the migrated
SQLite file, or the PostgreSQL database truncated.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from parley.app import create_app
from parley.config import Environment, Settings
from parley.db import create_engine, create_sessionmaker
from parley.migrate import upgrade
from parley.models import Base

pytest_plugins = ["tests.fixtures.factories", "tests.fixtures.browser", "tests.fixtures.stack"]

POSTGRES_URL = os.environ.get("PARLEY_TEST_POSTGRES_URL", "")
BACKENDS = ["sqlite"] + (["postgres"] if POSTGRES_URL else [])
TEST_SECRET = "test-secret-key-not-for-production-0123456789"


def pytest_report_header(config: pytest.Config) -> str:
    return f"parley database backends: {', '.join(BACKENDS)}"


def _asyncpg_url(url: str) -> str:
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


async def _recreate_postgres_database(admin_url: str, name: str) -> str:
    engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n AND pid <> pg_backend_pid()"
                ),
                {"n": name},
            )
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await engine.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def migrated_database(backend: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The URL of a database migrated to head: a template file (SQLite) or a fresh database (PostgreSQL)."""
    if backend == "sqlite":
        path = tmp_path_factory.mktemp("template") / "template.db"
        url = f"sqlite+aiosqlite:///{path}"
        upgrade(url)
        return url
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    # Several checkouts of the project may run their suites against the same server at once.
    checkout = hashlib.sha1(str(Path(__file__).resolve().parent).encode()).hexdigest()[:8]  # noqa: S324
    name = f"parley_test_{checkout}_{worker}"
    url = asyncio.run(_recreate_postgres_database(_asyncpg_url(POSTGRES_URL), name))
    upgrade(url)
    return url


async def _truncate_all(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
            await conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    finally:
        await engine.dispose()


@pytest.fixture
async def database_url(backend: str, migrated_database: str, tmp_path: Path) -> str:
    """An empty, migrated database for one test."""
    if backend == "sqlite":
        source = Path(make_url(migrated_database).database or "")
        target = tmp_path / "parley.db"
        shutil.copyfile(source, target)
        return f"sqlite+aiosqlite:///{target}"
    await _truncate_all(migrated_database)
    return migrated_database


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        env=Environment.testing,
        database_url=database_url,
        data_dir=tmp_path,
        secret_key=TEST_SECRET,
        log_json=False,
    )


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[object]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: object) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
async def session(database_url: str) -> AsyncIterator[AsyncSession]:
    """A session on the test's database (its own engine), for arranging data and checking what was stored."""
    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as db:
            yield db
    finally:
        await engine.dispose()
