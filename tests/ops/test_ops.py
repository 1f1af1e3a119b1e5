from __future__ import annotations

import pytest

from parley.config import Environment, Settings


class TestProbes:
    async def test_healthz(self, client):
        assert (await client.get("/healthz")).json() == {"status": "ok"}

    async def test_readyz_reports_database_and_migrations(self, client):
        response = await client.get("/readyz")
        assert response.status_code == 200
        assert response.json()["checks"] == {"database": "ok", "migrations": "current"}

    async def test_metrics_count_requests_by_route(self, client):
        await client.get("/healthz")
        body = (await client.get("/metrics")).text
        assert 'parley_http_requests_total{method="GET",route="/healthz",status="200"}' in body

    async def test_openapi_document_lists_the_api(self, client):
        document = (await client.get("/api/openapi.json")).json()
        assert "/api/v1/users" in document["paths"]
        assert (await client.get("/api/docs")).status_code == 200


class TestBodyLimit:
    async def test_oversized_body_is_413(self, client, admin_headers):
        response = await client.post(
            "/api/v1/teams",
            content=b"{" + b" " * (1024 * 1024 + 10) + b"}",
            headers={**admin_headers, "Content-Type": "application/json"},
        )
        assert response.status_code == 413
        assert response.json()["error"] == "PayloadTooLarge"


class TestSecrets:
    def test_production_refuses_default_secret(self, tmp_path):
        settings = Settings(env=Environment.production, data_dir=tmp_path, secret_key="change-me")  # type: ignore[arg-type]
        with pytest.raises(RuntimeError, match="PARLEY_SECRET_KEY"):
            settings.resolved_secret_key()

    def test_embedded_default_generates_and_keeps_a_secret(self, tmp_path):
        first = Settings(data_dir=tmp_path).resolved_secret_key()
        second = Settings(data_dir=tmp_path).resolved_secret_key()
        assert first == second and len(first) >= 48
        assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600

    def test_default_database_is_sqlite_under_data_dir(self, tmp_path):
        assert Settings(data_dir=tmp_path).database_url == f"sqlite+aiosqlite:///{tmp_path}/parley.db"


class TestSqliteOptimize:
    async def test_the_hourly_job_gives_sqlite_planner_statistics_and_leaves_postgres_alone(
        self, backend, database_url
    ):
        from sqlalchemy import text

        from parley.db import create_engine, create_sessionmaker, session_scope
        from parley.ops.tasks import sqlite_optimize

        engine = create_engine(database_url)
        try:
            maker = create_sessionmaker(engine)
            results = []
            for _ in range(2):  # the first run analyses a new database, later ones refresh what went stale
                async with session_scope(maker) as session:
                    results.append(await sqlite_optimize(session))
            if backend != "sqlite":
                assert results == [{}, {}]
                return
            assert results == [{"analysed": "all tables"}, {}]
            async with maker() as session:
                analysed = await session.scalar(text("SELECT count(*) FROM sqlite_stat1"))
            assert analysed and analysed > 0
        finally:
            await engine.dispose()
