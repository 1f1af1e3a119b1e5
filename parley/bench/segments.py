"""``parley bench segments``: counting segments over a million contacts.

Generates the contacts (bulk ``executemany`` on SQLite, ``COPY`` on
PostgreSQL: generation is part of what is reported), tags, custom attributes,
identities on two accounts and activity timestamps spread over a year, then
times ``count`` for several segment shapes through the same code the live
count endpoint uses. ``count_ms`` is the slowest shape's best-of-N time.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from parley.bench.support import workspace
from parley.cli import bench_app

CITIES = ["重庆", "成都", "北京", "上海", "广州", "深圳", "杭州", "武汉", "西安", "南京"] + [
    f"City {i}" for i in range(10)
]
TIERS = ["gold", "silver", "bronze", "none"]
INTERESTS = ["hotpot", "tea", "travel", "sport", "music", "games"]
TAGS = ["VIP", "Newsletter", "Wholesale", "Returning", "Complained"] + [f"Tag {i}" for i in range(15)]
STAGES = ["new", "active", "dormant", "lost"]


def _group(match: str, *conditions: dict[str, Any]) -> dict[str, Any]:
    return {"type": "group", "match": match, "conditions": list(conditions)}


def _shapes(tags: dict[str, str], accounts: list[str]) -> dict[str, dict[str, Any]]:
    """The acceptance family: a tag condition, an attribute condition and an activity window."""

    def tag(*names: str, op: str = "any") -> dict[str, Any]:
        return {"type": "tag", "op": op, "tag_ids": [tags[n] for n in names]}

    def activity(event: str, op: str, days: int) -> dict[str, Any]:
        return {"type": "activity", "event": event, "op": op, "days": days}

    gold = {"type": "attribute", "key": "tier", "op": "eq", "value": "gold"}
    return {
        "vip_gold_followed_30d": _group("all", tag("VIP"), gold, activity("followed", "within", 30)),
        "vip_spend_inbound_90d": _group(
            "all",
            tag("VIP"),
            {"type": "attribute", "key": "spend", "op": "gte", "value": 5000},
            activity("inbound", "within", 90),
        ),
        "newsletter_hotpot_silent_60d": _group(
            "all",
            tag("Newsletter"),
            {"type": "attribute", "key": "interests", "op": "has", "value": "hotpot"},
            activity("conversation", "not_within", 60),
        ),
        "vip_and_returning_gold_or_followed_7d": _group(
            "all",
            tag("VIP", "Returning", op="all"),
            _group("any", gold, activity("followed", "within", 7)),
        ),
    }


def _other_shapes(tags: dict[str, str], accounts: list[str]) -> dict[str, dict[str, Any]]:
    """Broader shapes without a tag to start from: reported, not part of ``count_ms``."""
    gold = {"type": "attribute", "key": "tier", "op": "eq", "value": "gold"}
    return {
        "city_and_spend": _group(
            "all",
            {"type": "field", "field": "city", "op": "eq", "value": "重庆"},
            {"type": "attribute", "key": "spend", "op": "gte", "value": 5000},
        ),
        "silent_60d_active_or_dormant": _group(
            "all",
            {"type": "activity", "event": "conversation", "op": "not_within", "days": 60},
            {"type": "stage", "op": "in", "stages": ["active", "dormant"]},
        ),
        "tag_or_attribute": _group(
            "any", {"type": "tag", "op": "any", "tag_ids": [tags["Newsletter"], tags["Wholesale"]]}, gold
        ),
        "account_without_tag": _group(
            "all",
            {"type": "channel", "op": "is", "account_id": accounts[0]},
            {"type": "tag", "op": "none", "tag_ids": [tags["VIP"]]},
        ),
    }


def _rows(
    n: int, seed: int, tag_ids: list[str], accounts: list[str]
) -> tuple[list[Any], list[Any], list[Any]]:
    rnd = random.Random(seed)
    now = datetime.now(UTC)
    contacts: list[tuple[Any, ...]] = []
    links: list[tuple[Any, ...]] = []
    identities: list[tuple[Any, ...]] = []
    vip, newsletter = tag_ids[0], tag_ids[1]
    for i in range(n):
        cid = uuid.UUID(int=rnd.getrandbits(128), version=4)
        followed = now - timedelta(seconds=rnd.randrange(365 * 86400))
        inbound = now - timedelta(seconds=rnd.randrange(400 * 86400)) if rnd.random() < 0.7 else None
        outbound = (
            now - timedelta(seconds=rnd.randrange(400 * 86400)) if inbound and rnd.random() < 0.8 else None
        )
        attrs = {
            "tier": rnd.choice(TIERS) if rnd.random() < 0.4 else TIERS[3],
            "spend": rnd.randrange(10000),
            "interests": sorted(rnd.sample(INTERESTS, rnd.randrange(3))),
        }
        contacts.append(
            (
                cid,
                f"Customer {i}",
                f"+86138{i:08d}"[:15],
                rnd.choice(CITIES),
                rnd.choice(STAGES),
                json.dumps(attrs),
                followed - timedelta(days=rnd.randrange(30)),
                followed,
                inbound,
                outbound,
                rnd.randrange(50) if inbound else 0,
                rnd.randrange(50) if outbound else 0,
            )
        )
        chosen = set()
        if rnd.random() < 0.1:
            chosen.add(vip)
        if rnd.random() < 0.2:
            chosen.add(newsletter)
        for _ in range(rnd.randrange(3)):
            chosen.add(rnd.choice(tag_ids[2:]))
        links.extend((tag, cid) for tag in chosen)
        account = accounts[i % len(accounts)]
        identities.append((uuid.UUID(int=rnd.getrandbits(128), version=4), cid, account, f"o{cid.hex[:27]}"))
    return contacts, links, identities


_CONTACT_COLUMNS = (
    "id, display_name, phone, city, lifecycle_stage, attributes, first_followed_at, last_followed_at, "
    "last_inbound_at, last_outbound_at, inbound_count, outbound_count"
)


async def _prepare(database_url: str, n: int, seed: int) -> dict[str, Any]:

    from parley.bench.support import BENCH_SECRET
    from parley.contacts import attributes
    from parley.contacts import tags as tag_service
    from parley.db import create_engine, create_sessionmaker
    from parley.kit.crypto import SecretBox
    from parley.migrate import upgrade_async
    from parley.models import ChannelAccount

    await upgrade_async(database_url)
    engine = create_engine(database_url)
    maker = create_sessionmaker(engine)
    try:
        async with maker() as session:
            accounts = []
            for name in ("重庆号", "成都号"):
                account = ChannelAccount(
                    type="wechat",
                    name=name,
                    api_base_url="http://127.0.0.1:9",
                    external_id=f"gh_{uuid.uuid4().hex[:12]}",
                    config={},
                    secrets_sealed=SecretBox(BENCH_SECRET).seal({}),
                    is_active=True,
                )
                session.add(account)
                accounts.append(account)
            tag_rows = [await tag_service.create_tag(session, name=name) for name in TAGS]
            await attributes.create_definition(
                session, key="tier", label="Tier", type="choice", options=TIERS
            )
            await attributes.create_definition(session, key="spend", label="Spend", type="number")
            await attributes.create_definition(
                session, key="interests", label="Interests", type="multi_choice", options=INTERESTS
            )
            await session.flush()
            tag_ids = {t.name: str(t.id) for t in tag_rows}
            account_ids = [str(a.id) for a in accounts]
            await session.commit()
        ordered_tags = [uuid.UUID(tag_ids[name]) for name in TAGS]
        accounts_uuid = [uuid.UUID(a) for a in account_ids]
        started = time.perf_counter()
        contacts, links, identities = _rows(n, seed, ordered_tags, accounts_uuid)  # type: ignore[arg-type]
        generated = time.perf_counter()
        if engine.dialect.name == "postgresql":
            await _copy_postgres(database_url, contacts, links, identities)
        else:
            _insert_sqlite(str(engine.url.database), contacts, links, identities)
        inserted = time.perf_counter()
        await _analyze(engine)
        return {
            "tags": tag_ids,
            "accounts": account_ids,
            "generate_s": round(generated - started, 1),
            "insert_s": round(inserted - generated, 1),
            "contact_tags": len(links),
        }
    finally:
        await engine.dispose()


_SQLITE_CONTACTS_INSERT = (
    "INSERT INTO contacts (" + _CONTACT_COLUMNS + ", avatar_url, email, gender, language, province, "  # noqa: S608
    "country, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,'',NULL,'unknown','','','',?,?)"
)


def _insert_sqlite(
    path: str,
    contacts: list[tuple[Any, ...]],
    links: list[tuple[Any, ...]],
    identities: list[tuple[Any, ...]],
) -> None:
    """One transaction on a plain sqlite3 connection: ``executemany`` without ORM overhead."""
    import sqlite3

    def to_sqlite(value: Any) -> Any:
        if isinstance(value, uuid.UUID):
            return value.hex
        if isinstance(value, datetime):
            return value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")
        return value

    now = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")
    db = sqlite3.connect(path)
    # A bulk load on a scratch database: a large cache keeps the random-UUID index pages in memory.
    db.execute("PRAGMA cache_size=-2000000")
    db.execute("PRAGMA synchronous=OFF")
    try:
        with db:
            db.executemany(
                _SQLITE_CONTACTS_INSERT,
                ([*(to_sqlite(v) for v in row), now, now] for row in contacts),
            )
            db.executemany(
                "INSERT INTO contact_tags (tag_id, contact_id, source, created_at) VALUES (?,?,'import',?)",
                ((to_sqlite(t), to_sqlite(c), now) for t, c in links),
            )
            db.executemany(
                "INSERT INTO contact_identities (id, contact_id, account_id, kind, scope, value, verified, "
                "created_at) VALUES (?,?,?,'wechat_openid',?,?,1,?)",
                ((to_sqlite(i), to_sqlite(c), to_sqlite(a), str(a), v, now) for i, c, a, v in identities),
            )
    finally:
        db.close()


async def _copy_postgres(
    url: str, contacts: list[tuple[Any, ...]], links: list[tuple[Any, ...]], identities: list[tuple[Any, ...]]
) -> None:
    import asyncpg  # type: ignore[import-untyped]
    from sqlalchemy.engine import make_url

    parsed = make_url(url).set(drivername="postgresql")
    conn = await asyncpg.connect(parsed.render_as_string(hide_password=False))
    now = datetime.now(UTC)
    try:
        async with conn.transaction():
            await conn.copy_records_to_table(
                "contacts",
                records=[(*row, "", None, "unknown", "", "", "", now, now) for row in contacts],
                columns=[c.strip() for c in _CONTACT_COLUMNS.split(",")]
                + [
                    "avatar_url",
                    "email",
                    "gender",
                    "language",
                    "province",
                    "country",
                    "created_at",
                    "updated_at",
                ],
            )
            await conn.copy_records_to_table(
                "contact_tags",
                records=[(t, c, "import", now) for t, c in links],
                columns=["tag_id", "contact_id", "source", "created_at"],
            )
            await conn.copy_records_to_table(
                "contact_identities",
                records=[(i, c, a, "wechat_openid", str(a), v, True, now) for i, c, a, v in identities],
                columns=[
                    "id",
                    "contact_id",
                    "account_id",
                    "kind",
                    "scope",
                    "value",
                    "verified",
                    "created_at",
                ],
            )
    finally:
        await conn.close()


async def _analyze(engine: Any) -> None:
    """Statistics for the planners; on PostgreSQL also the visibility map, as autovacuum would set it.

    Freshly copied rows are not yet marked all-visible, so until a vacuum every "index-only"
    scan also reads the table; a database that has been running a while has been vacuumed.
    """
    from sqlalchemy import text

    if engine.dialect.name != "postgresql":
        async with engine.begin() as conn:
            await conn.execute(text("ANALYZE"))
        return
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")  # VACUUM needs it
        await conn.execute(text("VACUUM (ANALYZE)"))


async def _upgrade(database_url: str) -> None:
    from parley.db import create_engine
    from parley.migrate import upgrade_async

    await upgrade_async(database_url)
    engine = create_engine(database_url)
    try:
        await _analyze(engine)
    finally:
        await engine.dispose()


async def _measure(database_url: str, shapes: dict[str, dict[str, Any]], repeat: int) -> dict[str, Any]:
    from parley.contacts.segments import count, parse_filter
    from parley.db import create_engine, create_sessionmaker

    engine = create_engine(database_url)
    results: dict[str, Any] = {}
    try:
        async with create_sessionmaker(engine)() as session:
            for name, definition in shapes.items():
                group = parse_filter(definition)
                times = []
                cpu = []
                total = 0
                for _ in range(repeat):
                    started, cpu_started = time.perf_counter(), time.process_time()
                    total = await count(session, group)
                    times.append((time.perf_counter() - started) * 1000)
                    cpu.append((time.process_time() - cpu_started) * 1000)
                results[name] = {
                    "count": total,
                    "ms": round(min(times), 1),
                    "first_ms": round(times[0], 1),
                    # SQLite runs in this process (aiosqlite's thread), so this is the count's own
                    # CPU time, a steadier figure than wall time on a shared machine; on
                    # PostgreSQL the work is in the server and this is only the client's share.
                    "cpu_ms": round(min(cpu), 1),
                }
    finally:
        await engine.dispose()
    return results


@bench_app.command("segments")
def segments(
    contacts: Annotated[int, typer.Option("--contacts", "-n", help="Contacts to generate")] = 1_000_000,
    database_url: Annotated[
        str, typer.Option(help="An empty PostgreSQL database to use (default: a temporary SQLite file)")
    ] = "",
    repeat: Annotated[int, typer.Option(help="Counts per shape; the best is reported")] = 5,
    seed: Annotated[int, typer.Option(help="Random seed of the generated data")] = 6,
    keep: Annotated[
        str,
        typer.Option(
            help="Keep the generated data and reuse it when FILE.json exists: the SQLite file FILE, "
            "or with --database-url that PostgreSQL database (FILE.json names its tags and accounts)"
        ),
    ] = "",
) -> None:
    """Counts segment shapes over N generated contacts; prints JSON with ``count_ms`` (the slowest shape)."""
    kept = Path(keep) if keep else None
    with workspace(database_url or (f"sqlite+aiosqlite:///{kept.resolve()}" if kept else None)) as ws:
        marker = kept.with_suffix(".json") if kept else None
        if marker is not None and marker.exists():
            prepared = json.loads(marker.read_text())
            # Data kept from an earlier run gets the migrations added since (indexes, say).
            asyncio.run(_upgrade(ws.database_url))
        else:
            prepared = asyncio.run(_prepare(ws.database_url, contacts, seed))
            if marker is not None:
                marker.write_text(json.dumps(prepared))
        shapes = _shapes(prepared["tags"], prepared["accounts"])
        measured = asyncio.run(_measure(ws.database_url, shapes, repeat))
        others = asyncio.run(
            _measure(ws.database_url, _other_shapes(prepared["tags"], prepared["accounts"]), repeat)
        )
    slowest = max(measured, key=lambda name: measured[name]["ms"])
    summary = {
        "bench": "segments",
        "backend": "postgresql" if "postgresql" in ws.database_url else "sqlite",
        "contacts": contacts,
        "contact_tags": prepared["contact_tags"],
        "generate_s": prepared["generate_s"],
        "insert_s": prepared["insert_s"],
        "shapes": measured,
        "slowest_shape": slowest,
        "other_shapes": others,
        "count_ms": measured[slowest]["ms"],
        "count_cpu_ms": max(shape["cpu_ms"] for shape in measured.values()),
    }
    typer.echo(json.dumps(summary, ensure_ascii=False))
