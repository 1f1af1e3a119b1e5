"""The migrations are the schema: they must build exactly what the models describe, and undo cleanly."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from parley.migrate import upgrade
from parley.models import Base


async def test_migrated_schema_matches_the_models(migrated_database):
    engine = create_async_engine(migrated_database)
    try:
        async with engine.connect() as conn:
            differences = await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True}), Base.metadata
                )
            )
    finally:
        await engine.dispose()
    assert differences == []


def test_every_migration_downgrades_and_upgrades_again(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'roundtrip.db'}"
    upgrade(url)
    from alembic import command

    from parley.migrate import alembic_config

    command.downgrade(alembic_config(url), "base")
    upgrade(url)
