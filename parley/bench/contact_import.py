"""``parley bench import``: a generated CSV with some invalid rows, imported twice.

The file has ``--rows`` contacts (name, phone, email, gender, city, birthday, a
number attribute and tags), keyed by email, with ``--invalid`` of them broken
in one of several ways. The first run must import every valid row and reject
every broken one; the second run of the same file must change nothing. Both
runs go through the same code as the worker (claim, batches, commit per batch).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
from typing import Annotated, Any

import typer

from parley.bench.support import BENCH_SECRET, Workspace, workspace
from parley.cli import bench_app

_BROKEN = (
    ("email", "not-an-email"),
    ("phone", "12ab"),
    ("birthday", "2020-13-45"),
    ("gender", "maybe"),
    ("email", ""),
    ("member_no", "abc"),
)
HEADERS = ["Name", "Phone", "Email", "Gender", "City", "Birthday", "Member no", "Tags"]


def generate_csv(rows: int, invalid: float) -> tuple[bytes, int]:
    """The file and how many of its rows are broken (spread evenly through it)."""
    every = round(1 / invalid) if invalid > 0 else 0
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(HEADERS)
    broken = 0
    cities = ["Shanghai", "Beijing", "Shenzhen", "Hangzhou", "Chengdu"]
    for i in range(rows):
        record = {
            "name": f"Customer {i}",
            "phone": f"+86138{i:08d}",
            "email": f"customer{i}@example.com",
            "gender": ("male", "female", "")[i % 3],
            "city": cities[i % len(cities)],
            "birthday": f"19{60 + i % 40}-0{1 + i % 9}-1{i % 10}",
            "member_no": str(100000 + i),
            "tags": ("vip, newsletter", "newsletter", "")[i % 3],
        }
        if every and i % every == every // 2:
            field, value = _BROKEN[broken % len(_BROKEN)]
            record[field] = value
            broken += 1
        writer.writerow(list(record.values()))
    return out.getvalue().encode(), broken


async def _import_once(ctx: Any, content: bytes) -> dict[str, Any]:
    from parley.contacts.imports import service
    from parley.db import session_scope
    from parley.models import ContactImport

    started = time.perf_counter()
    cpu = time.process_time()
    async with session_scope(ctx.sessionmaker) as session:
        job = await service.create_import(
            session, filename="bench.csv", content=content, actor_id=None, max_bytes=len(content) + 1
        )
        mapping = list(job.mapping)
        await service.start_import(session, ctx, job, mapping=mapping, key="email", account_id=None)
        job_id = job.id
    claim = await service.claim_import(ctx)
    if claim is None or claim.job_id != job_id:
        raise RuntimeError("the bench's import was not the job claimed")
    await service.run_import(ctx, claim)
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu
    async with session_scope(ctx.sessionmaker, write=False) as session:
        done = await session.get(ContactImport, job_id)
        assert done is not None  # noqa: S101
        return {
            "status": done.status,
            "mapping": mapping,
            "rows": done.processed_rows,
            "created": done.created_count,
            "updated": done.updated_count,
            "unchanged": done.unchanged_count,
            "rejected": done.rejected_count,
            "seconds": round(seconds, 2),
            "cpu_seconds": round(cpu_seconds, 2),
            "rows_per_s": round(done.processed_rows / seconds, 1),
        }


async def _bench(ws: Workspace, rows: int, invalid: float) -> dict[str, Any]:
    from parley.config import Environment, Settings
    from parley.context import build_context
    from parley.db import session_scope
    from parley.migrate import upgrade_async
    from parley.models import AttributeDefinition, AttributeType

    await upgrade_async(ws.database_url)
    settings = Settings(
        env=Environment.testing, database_url=ws.database_url, data_dir=ws.directory, secret_key=BENCH_SECRET
    )
    ctx = build_context(settings)
    try:
        async with session_scope(ctx.sessionmaker) as session:
            session.add(
                AttributeDefinition(key="member_no", label="Member no", type=AttributeType.number, options=[])
            )
        made = time.perf_counter()
        content, broken = generate_csv(rows, invalid)
        generate_s = time.perf_counter() - made
        first = await _import_once(ctx, content)
        second = await _import_once(ctx, content)
    finally:
        await ctx.close()
    return {
        "database": ws.database_url.split(":", 1)[0],
        "rows": rows,
        "invalid_in_file": broken,
        "file_mb": round(len(content) / 1e6, 2),
        "generate_s": round(generate_s, 2),
        "first": first,
        "second": second,
        "imported": first["created"],
        "rejected": first["rejected"],
        "seconds": first["seconds"],
        "cpu_seconds": first["cpu_seconds"],
        "rows_per_s": first["rows_per_s"],
        "second_seconds": second["seconds"],
        "second_cpu_seconds": second["cpu_seconds"],
        "changed": second["created"] + second["updated"],
    }


@bench_app.command("import")
def bench_import(
    rows: Annotated[int, typer.Option(help="Rows in the generated CSV")] = 100_000,
    invalid: Annotated[float, typer.Option(help="Share of broken rows")] = 0.01,
    database_url: Annotated[
        str | None, typer.Option(help="Use this (empty) database instead of a temporary SQLite file")
    ] = None,
) -> None:
    """Import a generated CSV twice: time, rejected rows, and what the second run changed."""
    with workspace(database_url) as ws:
        result = asyncio.run(_bench(ws, rows, invalid))
    print(json.dumps(result))
