"""REST: file imports under ``/api/v1/contacts/imports`` and the bulk upsert ``/api/v1/contacts/bulk``.

Reading needs ``contacts.read``; uploading, starting, cancelling and bulk
writes need ``contacts.write``. Starting an import and bulk writes are audited.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile, status
from fastapi.responses import Response
from pydantic import Field

from parley.auth.dependencies import DBSession, authorize
from parley.auth.permissions import Permission
from parley.auth.service import Principal, audit
from parley.contacts.imports import service
from parley.contacts.imports.bulk import MAX_ITEMS, bulk_upsert
from parley.context import Context
from parley.exceptions import NotFound, UnprocessableEntity
from parley.kit.schemas import Schema
from parley.models import ContactImport

ContactsRead = Annotated[Principal, Depends(authorize(Permission.contacts_read))]
ContactsWrite = Annotated[Principal, Depends(authorize(Permission.contacts_write))]

router = APIRouter(prefix="/api/v1/contacts", tags=["contacts"])


class ImportRead(Schema):
    id: uuid.UUID
    filename: str
    format: str
    status: str
    headers: list[str]
    sample: list[list[str]]
    mapping: list[str] = Field(description='One target per column: "" (skip), a field, "attr:<key>", "tags"…')
    key: str
    key_account_id: uuid.UUID | None
    total_rows: int
    processed_rows: int
    created_count: int
    updated_count: int
    unchanged_count: int
    rejected_count: int
    progress: float = Field(description="Share of rows done, 0 to 1")
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, job: ContactImport) -> ImportRead:
        total = max(job.total_rows, job.processed_rows)
        progress = 1.0 if job.status == "done" else (job.processed_rows / total if total else 0.0)
        return cls.model_validate({**_columns(job), "progress": round(progress, 4)})


def _columns(job: ContactImport) -> dict[str, Any]:
    return {c.key: getattr(job, c.key) for c in ContactImport.__table__.columns}


class ImportStart(Schema):
    mapping: list[str]
    key: str = Field(description='"phone", "email", "wechat_unionid", "wechat_openid" or "attr:<key>"')
    account_id: uuid.UUID | None = Field(default=None, description="The WeChat account of OpenIDs")


class RejectionRead(Schema):
    row_number: int
    column: str
    value: str
    reason: str


class BulkRequest(Schema):
    key: str = Field(
        description='What identifies a contact: "phone", "email", "wechat_unionid", "wechat_openid" or "attr:<key>"'
    )
    account_id: uuid.UUID | None = Field(default=None, description="The WeChat account, for wechat_openid")
    items: list[dict[str, Any]] = Field(
        max_length=MAX_ITEMS,
        description="Contacts: standard fields, `attributes` {key: value}, `tags` [names], `wechat_openid`, `wechat_unionid`",
    )


class BulkItemResult(Schema):
    index: int
    status: str = Field(description="created, updated, unchanged or rejected")
    contact_id: uuid.UUID | None
    errors: list[dict[str, str]]


class BulkResult(Schema):
    created: int
    updated: int
    unchanged: int
    rejected: int
    results: list[BulkItemResult]


def _ctx(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


async def _job(session: DBSession, import_id: uuid.UUID) -> ContactImport:
    job = await session.get(ContactImport, import_id)
    if job is None:
        raise NotFound("Import not found")
    return job


async def start_audited(
    session: DBSession,
    ctx: Context,
    principal: Principal,
    job: ContactImport,
    *,
    mapping: list[str],
    key: str,
    account_id: uuid.UUID | None,
) -> ContactImport:
    await service.start_import(session, ctx, job, mapping=mapping, key=key, account_id=account_id)
    await audit.record(
        session,
        actor=principal,
        action="contacts.import.start",
        target_type="contact_import",
        target_id=job.id,
        changes={"filename": job.filename, "rows": job.total_rows, "key": job.key},
    )
    return job


@router.post("/imports", status_code=status.HTTP_201_CREATED)
async def upload_import(
    request: Request,
    principal: ContactsWrite,
    session: DBSession,
    file: Annotated[
        UploadFile, File(description="A CSV (UTF-8 or GB18030) or XLSX file; the first row names the columns")
    ],
    mapping: Annotated[
        str | None, Form(description="JSON list, one target per column; with key, starts at once")
    ] = None,
    key: Annotated[str | None, Form()] = None,
    account_id: Annotated[uuid.UUID | None, Form()] = None,
) -> ImportRead:
    """Uploads a file. Without ``mapping`` and ``key`` the import waits for them (see ``/start``)."""
    content = await file.read()
    job = await service.create_import(
        session,
        filename=file.filename or "upload.csv",
        content=content,
        actor_id=principal.user.id,
        max_bytes=_ctx(request).settings.import_max_bytes,
    )
    if mapping is not None or key is not None:
        try:
            targets = json.loads(mapping) if mapping is not None else list(job.mapping)
        except ValueError:
            raise UnprocessableEntity("mapping must be a JSON list of targets") from None
        if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
            raise UnprocessableEntity("mapping must be a JSON list of targets")
        await start_audited(
            session, _ctx(request), principal, job, mapping=targets, key=key or job.key, account_id=account_id
        )
    return ImportRead.of(job)


@router.get("/imports")
async def list_imports(_: ContactsRead, session: DBSession) -> list[ImportRead]:
    return [ImportRead.of(job) for job in await service.recent_imports(session, limit=50)]


@router.get("/imports/{import_id}")
async def get_import(_: ContactsRead, session: DBSession, import_id: uuid.UUID) -> ImportRead:
    return ImportRead.of(await _job(session, import_id))


@router.post("/imports/{import_id}/start")
async def start_import(
    request: Request, principal: ContactsWrite, session: DBSession, import_id: uuid.UUID, data: ImportStart
) -> ImportRead:
    job = await _job(session, import_id)
    await start_audited(
        session, _ctx(request), principal, job, mapping=data.mapping, key=data.key, account_id=data.account_id
    )
    return ImportRead.of(job)


@router.post("/imports/{import_id}/cancel")
async def cancel_import(_: ContactsWrite, session: DBSession, import_id: uuid.UUID) -> ImportRead:
    return ImportRead.of(await service.cancel_import(session, await _job(session, import_id)))


@router.get("/imports/{import_id}/rejections")
async def list_rejections(
    _: ContactsRead,
    session: DBSession,
    import_id: uuid.UUID,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[RejectionRead]:
    await _job(session, import_id)
    rows = await service.rejection_page(session, import_id, offset=offset, limit=limit)
    return [RejectionRead.model_validate(r) for r in rows]


@router.get("/imports/{import_id}/rejections.csv", response_class=Response)
async def download_rejections(_: ContactsRead, session: DBSession, import_id: uuid.UUID) -> Response:
    job = await _job(session, import_id)
    return csv_response(job, await service.rejections_csv(session, import_id))


def csv_response(job: ContactImport, text: str) -> Response:
    stem = job.filename.rsplit(".", 1)[0] or "import"
    safe = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_.") else "_" for ch in stem)
    return Response(
        text.encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{safe}-rejected.csv"'},
    )


@router.post("/bulk")
async def bulk(principal: ContactsWrite, session: DBSession, data: BulkRequest) -> BulkResult:
    """Creates or updates up to 1,000 contacts by a key; each item succeeds or is rejected on its own."""
    results = await bulk_upsert(
        session, key=data.key, account_id=data.account_id, items=data.items, actor_id=principal.user.id
    )
    counts = {
        name: sum(1 for r in results if r.status == name)
        for name in ("created", "updated", "unchanged", "rejected")
    }
    if counts["created"] or counts["updated"]:
        await audit.record(
            session,
            actor=principal,
            action="contacts.bulk_upsert",
            target_type="contact",
            target_id=None,
            changes={"key": data.key, **counts},
        )
    return BulkResult(
        **counts,
        results=[
            BulkItemResult(index=r.index, status=r.status, contact_id=r.contact_id, errors=r.errors)
            for r in results
        ],
    )
