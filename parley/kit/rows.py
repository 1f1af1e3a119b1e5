"""Writing ORM rows with single Core statements, for paths that run once per inbound event.

A unit-of-work flush costs several times the statement it emits; the inbound
pipeline knows exactly which rows it writes, so it writes them with cached
Core statements and keeps the session's objects in step by hand:
:func:`insert_row` returns a persistent, clean object as if it had been loaded,
and :func:`set_committed` records values an UPDATE has just written, so that
nothing is written twice and later readers of the object see the new values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, cast

from sqlalchemy import Table, insert, inspect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import instance_state, set_committed_value

T = TypeVar("T")


class _Shape:
    """A mapped class's columns, defaults and INSERT statement, worked out once."""

    def __init__(self, model: type[Any]) -> None:
        mapper = inspect(model)
        table = mapper.local_table
        assert isinstance(table, Table)  # noqa: S101  (every model here maps one table)
        self.attrs: list[tuple[str, str, Callable[[], Any] | None]] = []
        self.generated: str | None = None  # an autoincrement key the database assigns
        for prop in mapper.column_attrs:
            column = prop.columns[0]
            default = column.default
            make: Callable[[], Any] | None = None
            if default is not None and getattr(default, "is_callable", False):
                fn = default.arg
                make = lambda fn=fn: fn(None)  # noqa: E731  (SQLAlchemy wraps argument-less defaults)
            elif default is not None and getattr(default, "is_scalar", False):
                value = default.arg
                make = lambda value=value: value  # noqa: E731
            if column.primary_key and column.autoincrement is True and default is None:
                self.generated = prop.key
                continue
            self.attrs.append((prop.key, column.key, make))
        stmt = insert(table)
        if self.generated is not None:
            stmt = stmt.returning(table.c[self.generated])
        self.insert = stmt
        self.manager = mapper.class_manager
        self.mapper = mapper
        self.table = table
        self.columns = [(prop.key, prop.columns[0]) for prop in mapper.column_attrs]
        self.primary_key = [mapper.get_property_by_column(c).key for c in mapper.primary_key]
        self.keys = [key for key, _column in self.columns]
        self.identity_class = mapper._identity_class


_SHAPES: dict[type[Any], _Shape] = {}


def _shape(model: type[Any]) -> _Shape:
    shape = _SHAPES.get(model)
    if shape is None:
        shape = _SHAPES[model] = _Shape(model)
    return shape


async def insert_row(session: AsyncSession, model: type[T], values: Mapping[str, Any]) -> T:
    """INSERTs one row (Python-side defaults filled in) and returns it as a persistent, unmodified object."""
    shape = _shape(model)
    attrs, params = _row_values(shape, values)
    if shape.generated is not None:
        attrs[shape.generated] = (await session.execute(shape.insert, params)).scalar_one()
    else:
        await session.execute(shape.insert, params)
    # As the ORM builds a loaded object: straight into the instance's dict, no attribute events.
    obj: T = _adopt(session, shape, attrs)
    return obj


def columns_of(model: type[Any]) -> list[Any]:
    """The model's table columns, in the order :func:`attach` reads them from a row."""
    return [column for _key, column in _shape(model).columns]


def attach(session: AsyncSession, model: type[T], row: Sequence[Any]) -> T:
    """The session's object for a row selected with :func:`columns_of`, as an ORM query would give it.

    An object the session already holds is returned as it is (attributes it has expired, after a
    rolled-back savepoint, are filled from the row); otherwise a persistent, unmodified one is made.
    """
    shape = _shape(model)
    values = dict(zip(shape.keys, row, strict=True))
    held = session.sync_session.identity_map.get(_identity(shape, values))
    if held is not None:
        unloaded = instance_state(held).unloaded
        for key in unloaded & values.keys():
            set_committed_value(held, key, values[key])
        return cast(T, held)
    return cast(T, _adopt(session, shape, values))


def set_committed(obj: object, values: Mapping[str, Any]) -> None:
    """Records values just written by a Core UPDATE as the object's loaded state (no flush will repeat them)."""
    for key, value in values.items():
        set_committed_value(obj, key, value)


def _row_values(shape: _Shape, values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    attrs: dict[str, Any] = {}
    params: dict[str, Any] = {}
    for key, column_key, make in shape.attrs:
        if key in values:
            value = values[key]
        elif make is not None:
            value = make()
        else:
            value = None
        attrs[key] = params[column_key] = value
    return attrs, params


def _identity(shape: _Shape, values: Mapping[str, Any]) -> tuple[Any, ...]:
    # Mapper.identity_key_from_primary_key's key, built without the call.
    return (shape.identity_class, tuple([values[k] for k in shape.primary_key]), None)


def _adopt(session: AsyncSession, shape: _Shape, attrs: dict[str, Any]) -> Any:
    """A persistent, unmodified object for a row with all its columns, put in the session as a query would.

    What ``make_transient_to_detached`` and ``Session.add`` do for such an object, without their
    general work (expiring what is not loaded, walking relationships for cascades), which cost more
    than the rest of a row's processing on the inbound path.
    """
    obj = shape.manager.new_instance()
    state = instance_state(obj)
    state.dict.update(attrs)
    state.key = _identity(shape, attrs)
    sync = session.sync_session
    state.session_id = sync.hash_key
    if not sync.identity_map.add(state):
        # Already there (it cannot be another object: callers look the key up first).
        state.session_id = None
        raise RuntimeError(f"{shape.mapper.class_.__name__} {state.key[1]} is in the session already")
    return obj


_RETURNING: dict[tuple[type[Any], str], Any] = {}


async def insert_rows(
    session: AsyncSession, model: type[T], rows: Sequence[Mapping[str, Any]], *, matched_by: str | None = None
) -> list[T]:
    """:func:`insert_row` for many rows in one executemany; the objects come back in the order given.

    A model whose key the database assigns needs ``matched_by``, a unique column given in every row,
    to tell which assigned key belongs to which row (RETURNING's order is not the VALUES' order).
    """
    if not rows:
        return []
    shape = _shape(model)
    made = [_row_values(shape, values) for values in rows]
    if shape.generated is None:
        await session.execute(shape.insert, [params for _attrs, params in made])
    else:
        if matched_by is None:
            raise ValueError(f"{model.__name__} has a database-assigned key: say which column matches rows")
        stmt = _RETURNING.get((model, matched_by))
        if stmt is None:
            stmt = _RETURNING[(model, matched_by)] = insert(shape.table).returning(
                shape.table.c[shape.generated], shape.table.c[matched_by]
            )
        result = await session.execute(stmt, [params for _attrs, params in made])
        assigned = {match: key for key, match in result.all()}
        for attrs, _params in made:
            attrs[shape.generated] = assigned[attrs[matched_by]]
    return [cast(T, _adopt(session, shape, attrs)) for attrs, _params in made]
