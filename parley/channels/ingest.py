"""Storing what platforms deliver, exactly once per dedupe key."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from parley.channels.base import InboundEvent
from parley.kit.rows import attach, columns_of
from parley.models import ChannelAccount
from parley.models import InboundEvent as InboundEventRow


@dataclass(frozen=True)
class Stored:
    new_ids: list[int]
    duplicates: int
    # The new rows themselves, when asked for (``load=True``), in id order.
    rows: list[InboundEventRow] = field(default_factory=list)


_EVENTS: Table = InboundEventRow.__table__  # type: ignore[assignment]
_COLUMNS = columns_of(InboundEventRow)


def _insert(dialect_insert: Any, *returning: Any) -> Any:
    # Core, not an ORM-enabled insert: the ORM's bulk path cost more than the statement itself.
    return (
        dialect_insert(_EVENTS)
        .on_conflict_do_nothing(index_elements=["account_id", "dedupe_key"])
        .returning(*returning)
    )


_INSERTS = {
    "postgresql": _insert(postgresql.insert, _EVENTS.c.id),
    "sqlite": _insert(sqlite.insert, _EVENTS.c.id),
}
# The same insert returning whole rows, made into session objects, for callers that process them
# next: one statement instead of the insert and a select of what it inserted.
_LOADING_INSERTS = {
    "postgresql": _insert(postgresql.insert, *_COLUMNS),
    "sqlite": _insert(sqlite.insert, *_COLUMNS),
}


def _row(account: ChannelAccount, event: InboundEvent, raw: str) -> dict[str, Any]:
    return {
        "account_id": account.id,
        "channel_type": account.type,
        "kind": event.kind.value,
        "type": event.type,
        "dedupe_key": event.dedupe_key,
        "platform_message_id": event.platform_message_id,
        "sender_id": event.sender.id,
        "sender_unionid": event.sender.unionid,
        "occurred_at": event.occurred_at,
        "normalized": event.model_dump(mode="json"),
        "raw": raw,
        "status": "pending",
    }


async def store_events(
    session: AsyncSession,
    *,
    account: ChannelAccount,
    events: list[InboundEvent],
    raw: str,
    load: bool = False,
) -> Stored:
    """Inserts the events; ones already stored (a platform retry) are skipped, not updated.

    One statement for the whole batch, so a payload is stored whole or not at all.
    """
    if not events:
        return Stored([], 0)
    # The same key twice inside one payload is also one event.
    unique: dict[str, InboundEvent] = {}
    for event in events:
        unique.setdefault(event.dedupe_key, event)
    rows = [_row(account, event, raw) for event in unique.values()]
    dialect = session.get_bind().dialect.name
    # Parameters passed separately (not .values(rows)) so the compiled statement is cached;
    # compiling it afresh cost more than the insert itself.
    if load:
        result = await session.execute(_LOADING_INSERTS[dialect], rows)
        loaded = sorted((attach(session, InboundEventRow, row) for row in result.all()), key=lambda r: r.id)
        return Stored([r.id for r in loaded], len(events) - len(loaded), loaded)
    new_ids = list((await session.scalars(_INSERTS[dialect], rows)).all())
    return Stored(new_ids=new_ids, duplicates=len(events) - len(new_ids))


# Many payloads' events in one statement (the group committer's batches): each new row is told
# apart by its account and dedupe key, since RETURNING's order is not the VALUES' order.
_KEYED_INSERTS = {
    "postgresql": _insert(postgresql.insert, _EVENTS.c.id, _EVENTS.c.account_id, _EVENTS.c.dedupe_key),
    "sqlite": _insert(sqlite.insert, _EVENTS.c.id, _EVENTS.c.account_id, _EVENTS.c.dedupe_key),
}


@dataclass(frozen=True)
class NewEvent:
    """An event stored just now by :func:`store_payloads`, with what processing it needs."""

    id: int
    account: ChannelAccount
    event: InboundEvent
    normalized: dict[str, Any]
    payload: int  # the index of the payload it came in


async def store_payloads(
    session: AsyncSession, payloads: list[tuple[ChannelAccount, list[InboundEvent], str]]
) -> tuple[list[Stored], list[NewEvent]]:
    """:func:`store_events` for many payloads in one statement; also returns the new events in id order.

    A key repeated across payloads (a platform retry in the same group) is stored once, for the
    first payload that carried it; the later ones count it as a duplicate.
    """
    rows: list[dict[str, Any]] = []
    carried: list[tuple[int, ChannelAccount, InboundEvent]] = []
    seen: set[tuple[Any, str]] = set()
    for index, (account, events, raw) in enumerate(payloads):
        for event in events:
            if (account.id, event.dedupe_key) in seen:
                continue
            seen.add((account.id, event.dedupe_key))
            rows.append(_row(account, event, raw))
            carried.append((index, account, event))
    assigned: dict[tuple[Any, str], int] = {}
    if rows:
        result = await session.execute(_KEYED_INSERTS[session.get_bind().dialect.name], rows)
        assigned = {(account_id, key): event_id for event_id, account_id, key in result.all()}
    new: list[NewEvent] = []
    for (index, account, event), row in zip(carried, rows, strict=True):
        event_id = assigned.get((account.id, event.dedupe_key))
        if event_id is not None:
            new.append(NewEvent(event_id, account, event, row["normalized"], index))
    new.sort(key=lambda n: n.id)
    ids_of: list[list[int]] = [[] for _ in payloads]
    for n in new:
        ids_of[n.payload].append(n.id)
    stored = [
        Stored(ids, len(events) - len(ids))
        for ids, (_account, events, _raw) in zip(ids_of, payloads, strict=True)
    ]
    return stored, new
