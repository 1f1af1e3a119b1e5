"""Database housekeeping."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from parley.worker import periodic

# Rows SQLite samples per index when it refreshes its statistics: enough for the planner to tell a
# selective index from a poor one, and a bounded pause (milliseconds) even on a million-row table.
ANALYSIS_LIMIT = 1000


@periodic("ops.sqlite_optimize", every_s=3600)
async def sqlite_optimize(session: AsyncSession) -> dict[str, str]:
    """Keeps SQLite's planner statistics current; PostgreSQL's autovacuum does this by itself.

    SQLite never gathers statistics on its own: a database that was never analysed plans its
    joins by guesswork, and a segment count or an inbox query may pick the wrong index as
    the tables grow. ``PRAGMA optimize`` analyses only the tables whose statistics are missing
    or stale, which SQLite's documentation recommends running periodically on long-lived
    connections.
    """
    if session.get_bind().dialect.name != "sqlite":
        return {}
    connection = await session.connection()
    await connection.exec_driver_sql(f"PRAGMA analysis_limit={ANALYSIS_LIMIT}")
    analysed = (
        await connection.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'")
    ).first()
    if analysed is None:
        # Before SQLite 3.46, optimize only acts on what this connection's own queries touched.
        await connection.exec_driver_sql("ANALYZE")
        return {"analysed": "all tables"}
    await connection.exec_driver_sql("PRAGMA optimize")
    return {}
