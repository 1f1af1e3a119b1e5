"""Bulk inserts on the database driver's own ``executemany``.

An import writes up to a few thousand rows per statement per batch. Through
``session.execute(insert(table), dicts)`` SQLAlchemy builds a parameter dict
and runs each value's bind processor for every row, which cost about as much
CPU as SQLite's own work. Here each column's processor is looked up once, the
values every row shares (timestamps, the source) are converted once, and the
driver gets plain tuples. The values stored are the same: they go through the
same processors.

On SQLite the rows go as multi-row ``INSERT ... VALUES (...), (...)`` statements
rather than one ``executemany``: ``contacts`` has an AFTER INSERT trigger, and a
statement that may fire a trigger opens a statement journal, which copies every
page it touches before changing it. Once per row, that was two thirds of the
CPU of inserting 100,000 contacts; once per few hundred rows it is noise. The
trigger still fires for every row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession


def _placeholders(dialect: Dialect, count: int) -> str:
    style = dialect.paramstyle
    if style == "qmark":
        return ", ".join("?" * count)
    if style == "numeric_dollar":
        return ", ".join(f"${i}" for i in range(1, count + 1))
    if style in ("format", "pyformat"):
        return ", ".join(["%s"] * count)
    raise NotImplementedError(f"no bulk insert for the {style!r} parameter style")


# Host parameters per SQLite statement: far below the 32,766 that SQLite allows since 3.32, and
# enough rows per statement (200 contacts) that the per-statement cost no longer shows.
_SQLITE_PARAMETERS = 4000


def _processor(table: Table, name: str, dialect: Dialect) -> Callable[[Any], Any] | None:
    return table.c[name].type.dialect_impl(dialect).bind_processor(dialect)


async def insert_rows(
    session: AsyncSession,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    constants: dict[str, Any] | None = None,
) -> None:
    """Inserts ``rows`` (values in the order of ``columns``) plus ``constants``, the same in every row.

    Runs in the session's transaction; columns not named get the database's default, not the model's.
    """
    if not rows:
        return
    connection = await session.connection()
    dialect = connection.dialect
    constants = constants or {}
    names = [*columns, *constants]
    head = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES "  # noqa: S608 - names come from the table
    one = f"({_placeholders(dialect, len(names))})"
    processors = [_processor(table, name, dialect) for name in columns]
    shared: tuple[Any, ...] = tuple(
        value if (proc := _processor(table, name, dialect)) is None or value is None else proc(value)
        for name, value in constants.items()
    )
    active = [(i, p) for i, p in enumerate(processors) if p is not None]
    parameters: list[tuple[Any, ...]] = []
    for row in rows:
        values = list(row)
        for i, proc in active:
            value = values[i]
            if value is not None:
                values[i] = proc(value)
        parameters.append((*values, *shared))
    if dialect.name != "sqlite":
        await connection.exec_driver_sql(head + one, parameters)
        return
    per_statement = max(1, _SQLITE_PARAMETERS // len(names))
    for start in range(0, len(parameters), per_statement):
        chunk = parameters[start : start + per_statement]
        await connection.exec_driver_sql(
            head + ", ".join([one] * len(chunk)), tuple(value for row in chunk for value in row)
        )
