"""Import jobs: upload, map, run in batches under a lease, report rejected rows.

The worker reads the stored file once per claim and skips the rows already
done (``processed_rows``, committed with each batch). Skipped rows are still
validated, without the database, so that a duplicate key later in the file is
recognised after a resume exactly as in an uninterrupted run.
"""

from __future__ import annotations

import asyncio
import csv
import gc
import io
import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import func, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from parley.channels.base import ChannelType
from parley.contacts.imports.mapping import (
    Identity,
    MappingError,
    Rejection,
    Row,
    Spec,
    compile_spec,
    guess_key,
    guess_mapping,
    validate_row,
)
from parley.contacts.imports.reader import FileError, data_rows, detect_format, preview
from parley.contacts.imports.upsert import Outcome, upsert_rows
from parley.context import Context
from parley.db import on_commit, session_scope
from parley.exceptions import Conflict, PayloadTooLarge, UnprocessableEntity
from parley.kit.types import utcnow
from parley.models import (
    AttributeDefinition,
    ChannelAccount,
    ContactImport,
    ContactImportFile,
    ContactImportRejection,
    ImportStatus,
)

log = structlog.get_logger()

BATCH = 1000
_WAKE = "contacts.imports.wake"


def wake_event(ctx: Context) -> asyncio.Event:
    event = ctx.extras.get(_WAKE)
    if event is None:
        event = ctx.extras[_WAKE] = asyncio.Event()
    return event


async def definitions(session: AsyncSession) -> list[AttributeDefinition]:
    return list(
        (await session.scalars(select(AttributeDefinition).order_by(AttributeDefinition.position))).all()
    )


async def wechat_accounts(session: AsyncSession) -> list[ChannelAccount]:
    return list(
        (
            await session.scalars(
                select(ChannelAccount)
                .where(ChannelAccount.type == ChannelType.wechat)
                .order_by(ChannelAccount.name)
            )
        ).all()
    )


async def create_import(
    session: AsyncSession,
    *,
    filename: str,
    content: bytes,
    actor_id: uuid.UUID | None,
    max_bytes: int,
) -> ContactImport:
    """Stores an upload and guesses its mapping; nothing is imported until :func:`start_import`."""
    if len(content) > max_bytes:
        raise PayloadTooLarge(f"The file is larger than {max_bytes // (1024 * 1024)} MB")
    if not content.strip():
        raise UnprocessableEntity("The file is empty")
    try:
        fmt = detect_format(filename, content)
        seen = preview(content, fmt)
    except FileError as exc:
        raise UnprocessableEntity(str(exc)) from None
    mapping = guess_mapping(seen.headers, await definitions(session))
    job = ContactImport(
        id=uuid.uuid4(),
        created_by_id=actor_id,
        filename=(filename or "upload")[:255],
        format=fmt,
        size_bytes=len(content),
        headers=seen.headers,
        sample=seen.sample,
        mapping=mapping,
        key=guess_key(mapping),
        total_rows=seen.total_rows,
        status=ImportStatus.mapping.value,
    )
    session.add(job)
    await session.flush()
    session.add(ContactImportFile(import_id=job.id, content=content))
    await session.flush()
    return job


async def _spec(
    session: AsyncSession, job: ContactImport, mapping: list[str], key: str, account_id: uuid.UUID | None
) -> Spec:
    accounts = {a.id for a in await wechat_accounts(session)}
    return compile_spec(
        headers=list(job.headers),
        mapping=mapping,
        key=key,
        account_id=account_id,
        definitions=await definitions(session),
        wechat_account_ids=accounts,
    )


async def start_import(
    session: AsyncSession,
    ctx: Context,
    job: ContactImport,
    *,
    mapping: list[str],
    key: str,
    account_id: uuid.UUID | None,
) -> ContactImport:
    if job.status != ImportStatus.mapping:
        raise Conflict("This import has already been started")
    try:
        spec = await _spec(session, job, mapping, key, account_id)
    except MappingError as exc:
        raise UnprocessableEntity(str(exc)) from None
    job.mapping = list(spec.mapping)
    job.key = spec.key
    job.key_account_id = spec.account_id
    job.status = ImportStatus.queued.value
    await session.flush()
    event = wake_event(ctx)

    async def wake() -> None:
        event.set()

    on_commit(session, wake)
    return job


async def cancel_import(session: AsyncSession, job: ContactImport) -> ContactImport:
    if job.status in (ImportStatus.done, ImportStatus.failed, ImportStatus.cancelled):
        raise Conflict("This import has already finished")
    # The worker checks the status with every batch, so it stops after the one in hand.
    job.status = ImportStatus.cancelled.value
    job.finished_at = utcnow()
    job.lease_until = None
    await session.flush()
    return job


# --- the worker side ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    job_id: uuid.UUID
    token: str


class LeaseLost(Exception):
    """Another worker holds the job now (our lease ran out), or it was cancelled."""


def _claimable(now: Any) -> Any:
    return (
        ContactImport.status.in_(ImportStatus.active()),
        or_(ContactImport.lease_until.is_(None), ContactImport.lease_until < now),
    )


async def claim_import(ctx: Context) -> Claim | None:
    now = utcnow()
    # A read first, so that idle workers do not take SQLite's write lock every poll.
    async with session_scope(ctx.sessionmaker, write=False) as session:
        if await session.scalar(select(ContactImport.id).where(*_claimable(now)).limit(1)) is None:
            return None
    async with session_scope(ctx.sessionmaker) as session:
        job = await session.scalar(
            select(ContactImport)
            .where(*_claimable(now))
            .order_by(ContactImport.created_at)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        if job is None:
            return None
        token = secrets.token_hex(16)
        job.status = ImportStatus.running.value
        job.lease_token = token
        job.lease_until = now + timedelta(seconds=ctx.settings.contacts_job_lease_s)
        job.started_at = job.started_at or now
        return Claim(job.id, token)


async def _held(session: AsyncSession, claim: Claim) -> ContactImport:
    job = await session.scalar(
        select(ContactImport)
        .where(ContactImport.id == claim.job_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if job is None or job.status != ImportStatus.running or job.lease_token != claim.token:
        raise LeaseLost()
    return job


def _key_header(spec: Spec) -> str:
    return spec.headers[spec.key_column]


def _check(spec: Spec, seen: dict[Identity, int], number: int, cells: list[Any]) -> Row | list[Rejection]:
    checked = validate_row(spec, number, cells)
    if isinstance(checked, Row):
        first = seen.setdefault(checked.key, number)
        if first != number:
            return [Rejection(number, _key_header(spec), checked.key.value, f"the same key as row {first}")]
    return checked


async def _write_batch(
    ctx: Context, claim: Claim, spec: Spec, batch: list[tuple[int, list[Any]]], seen: dict[Identity, int]
) -> None:
    rows: list[Row] = []
    rejections: list[Rejection] = []
    for number, cells in batch:
        checked = _check(spec, seen, number, cells)
        if isinstance(checked, Row):
            rows.append(checked)
        else:
            rejections.extend(checked)
    async with session_scope(ctx.sessionmaker) as session:
        job = await _held(session, claim)
        results = await upsert_rows(session, rows, source="import", actor_id=job.created_by_id)
        counts = dict.fromkeys(Outcome, 0)
        for result in results:
            counts[result.outcome] += 1
            if result.outcome is Outcome.rejected:
                row = next(r for r in rows if r.number == result.number)
                rejections.append(Rejection(result.number, _key_header(spec), row.key.value, result.reason))
        if rejections:
            await session.execute(
                insert(ContactImportRejection),
                [
                    {
                        "import_id": job.id,
                        "row_number": r.number,
                        "column": r.column[:255],
                        "value": r.value[:500],
                        "reason": r.reason[:500],
                    }
                    for r in rejections
                ],
            )
        job.created_count += counts[Outcome.created]
        job.updated_count += counts[Outcome.updated]
        job.unchanged_count += counts[Outcome.unchanged]
        job.rejected_count += len({r.number for r in rejections})
        job.processed_rows += len(batch)
        job.lease_until = utcnow() + timedelta(seconds=ctx.settings.contacts_job_lease_s)


async def _finish(ctx: Context, claim: Claim, *, error: str | None = None) -> None:
    async with session_scope(ctx.sessionmaker) as session:
        job = await _held(session, claim)
        job.status = (ImportStatus.failed if error else ImportStatus.done).value
        job.error = error
        if not error:
            job.total_rows = job.processed_rows
        job.finished_at = utcnow()
        job.lease_until = None


async def _release(ctx: Context, claim: Claim) -> None:
    async with session_scope(ctx.sessionmaker) as session:
        await session.execute(
            update(ContactImport)
            .where(ContactImport.id == claim.job_id, ContactImport.lease_token == claim.token)
            .values(lease_until=None)
        )


def _batches(rows: Iterator[tuple[int, list[Any]]], size: int) -> Iterator[list[tuple[int, list[Any]]]]:
    batch: list[tuple[int, list[Any]]] = []
    for item in rows:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


@contextmanager
def _spare_the_collector() -> Iterator[None]:
    """Leaves the objects that exist when an import starts out of the collector's full passes.

    An import keeps each batch's rows alive for the batch, so thousands of objects
    per batch reach the oldest generation and set off a full collection every few
    batches; each pass walked the whole process (the modules, SQLAlchemy, the app:
    about 200,000 objects, a quarter of a second), a quarter of the import's CPU.
    Frozen objects are only left out of those passes; reference counting still frees
    them, and they are handed back to the collector when the import ends.
    """
    if gc.get_freeze_count():
        # The process froze its start-up heap already (``parley worker``, parley/kit/gc_tuning.py): that
        # is what needs sparing, and unfreezing at the end would hand it back to every full pass.
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


# Each time the tables may have grown about fourfold since the last look.
_ANALYSE_AFTER_BATCHES = frozenset({1, 4, 16, 64})


async def _refresh_statistics(ctx: Context) -> None:
    """Tells PostgreSQL's planner how big the tables the import fills have become.

    Planned without statistics (a new database, or autovacuum not yet round), the
    batch's identity lookup used the unique index for ``kind`` and ``scope`` only
    and compared ``value`` against every identity of that kind: a 100,000-row first
    import took over nine minutes. Autovacuum would analyse the tables eventually;
    the import cannot wait for it. SQLite plans these lookups well without statistics.
    """
    if ctx.engine.dialect.name != "postgresql":
        return
    async with session_scope(ctx.sessionmaker) as session:
        await session.execute(text("ANALYZE contacts, contact_identities"))


async def run_import(
    ctx: Context, claim: Claim, *, stop: asyncio.Event | None = None, batch_size: int = BATCH
) -> None:
    """Works a claimed job to the end (or until ``stop``, or until the lease is lost)."""
    async with session_scope(ctx.sessionmaker, write=False) as session:
        job = await session.get(ContactImport, claim.job_id)
        stored = await session.get(ContactImportFile, claim.job_id)
        if job is None or stored is None:
            return
        try:
            spec = await _spec(session, job, list(job.mapping), job.key, job.key_account_id)
        except MappingError as exc:
            spec = None
            problem = f"The mapping no longer fits: {exc}"
        start, fmt, content = job.processed_rows, job.format, stored.content
    with _spare_the_collector():
        try:
            if spec is None:
                await _finish(ctx, claim, error=problem)
                return
            seen: dict[Identity, int] = {}
            rows = data_rows(content, fmt)
            for _ in range(start):
                number, cells = next(rows)
                _check(spec, seen, number, cells)
            for written, batch in enumerate(_batches(rows, batch_size), 1):
                await _write_batch(ctx, claim, spec, batch, seen)
                if written in _ANALYSE_AFTER_BATCHES:
                    await _refresh_statistics(ctx)
                await asyncio.sleep(0)  # let webhooks and pages in between batches
                if stop is not None and stop.is_set():
                    await _release(ctx, claim)
                    return
            await _finish(ctx, claim)
        except FileError as exc:
            await _finish(ctx, claim, error=str(exc))
        except LeaseLost:
            log.info("contacts.import.lease_lost", import_id=str(claim.job_id))
        except StopIteration:
            await _finish(ctx, claim, error="The file has fewer rows than were already imported")


# --- reading results ------------------------------------------------------------------------------


async def rejection_page(
    session: AsyncSession, job_id: uuid.UUID, *, offset: int = 0, limit: int = 100
) -> list[ContactImportRejection]:
    return list(
        (
            await session.scalars(
                select(ContactImportRejection)
                .where(ContactImportRejection.import_id == job_id)
                .order_by(ContactImportRejection.row_number, ContactImportRejection.id)
                .offset(offset)
                .limit(limit)
            )
        ).all()
    )


async def rejection_count(session: AsyncSession, job_id: uuid.UUID) -> int:
    return int(
        await session.scalar(
            select(func.count())
            .select_from(ContactImportRejection)
            .where(ContactImportRejection.import_id == job_id)
        )
        or 0
    )


async def rejections_csv(session: AsyncSession, job_id: uuid.UUID) -> str:
    """Every rejected row with its reasons, as CSV with a byte-order mark so that Excel reads it as UTF-8."""
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out)
    writer.writerow(["row", "column", "value", "reason"])
    result = await session.stream(
        select(
            ContactImportRejection.row_number,
            ContactImportRejection.column,
            ContactImportRejection.value,
            ContactImportRejection.reason,
        )
        .where(ContactImportRejection.import_id == job_id)
        .order_by(ContactImportRejection.row_number, ContactImportRejection.id)
    )
    async for number, column, value, reason in result:
        writer.writerow([number, _cell(column), _cell(value), reason])
    return out.getvalue()


def _cell(text: str) -> str:
    # A cell starting with = + - @ is a formula to Excel: the uploaded values must not run as one.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


async def recent_imports(session: AsyncSession, limit: int = 20) -> list[ContactImport]:
    return list(
        (
            await session.scalars(
                select(ContactImport).order_by(ContactImport.created_at.desc()).limit(limit)
            )
        ).all()
    )
