"""Storing what platforms deliver, exactly once per dedupe key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from parley.channels.base import InboundEvent
from parley.models import ChannelAccount
from parley.models import InboundEvent as InboundEventRow


@dataclass(frozen=True)
class Stored:
    new_ids: list[int]
    duplicates: int


def _insert(dialect_insert: Any) -> Any:
    return (
        dialect_insert(InboundEventRow)
        .on_conflict_do_nothing(index_elements=["account_id", "dedupe_key"])
        .returning(InboundEventRow.id)
    )


_INSERTS = {"postgresql": _insert(postgresql.insert), "sqlite": _insert(sqlite.insert)}


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
    session: AsyncSession, *, account: ChannelAccount, events: list[InboundEvent], raw: str
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
    stmt = _INSERTS[dialect]
    new_ids = list((await session.scalars(stmt, rows)).all())
    return Stored(new_ids=new_ids, duplicates=len(events) - len(new_ids))
