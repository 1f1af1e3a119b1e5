"""Console pages: Contacts → Import (upload, map, progress, rejected rows)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import UploadFile

from parley.auth.dependencies import DBSession
from parley.auth.permissions import Permission
from parley.auth.service import Principal
from parley.contacts.fields import STANDARD_FIELDS
from parley.contacts.imports import service
from parley.contacts.imports.endpoints import csv_response, start_audited
from parley.contacts.imports.mapping import ATTR, KEY_FIELDS, OPENID, TAGS, UNIONID
from parley.context import Context
from parley.exceptions import NotFound, ParleyError
from parley.models import AttributeType, ContactImport
from parley.web.auth import page
from parley.web.rendering import render

router = APIRouter(include_in_schema=False)
PageContactsRead = Annotated[Principal, Depends(page(Permission.contacts_read))]
PageContactsWrite = Annotated[Principal, Depends(page(Permission.contacts_write))]

REJECTIONS_SHOWN = 100


def _ctx(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


async def _list(
    request: Request,
    session: DBSession,
    principal: Principal,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "contacts/imports.html",
        principal,
        status_code=status_code,
        imports=await service.recent_imports(session),
        error=error,
        max_mb=_ctx(request).settings.import_max_bytes // (1024 * 1024),
    )


@router.get("/contacts/imports", response_class=HTMLResponse)
async def imports_page(request: Request, principal: PageContactsRead, session: DBSession) -> HTMLResponse:
    return await _list(request, session, principal)


@router.post("/contacts/imports", response_class=HTMLResponse, response_model=None)
async def upload_page(
    request: Request, principal: PageContactsWrite, session: DBSession
) -> HTMLResponse | RedirectResponse:
    form = await request.form()
    upload = form.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        return await _list(request, session, principal, error="imports.choose_file", status_code=422)
    try:
        job = await service.create_import(
            session,
            filename=upload.filename,
            content=await upload.read(),
            actor_id=principal.user.id,
            max_bytes=_ctx(request).settings.import_max_bytes,
        )
    except ParleyError as exc:
        return await _list(request, session, principal, error=exc.message, status_code=exc.status_code)
    return RedirectResponse(f"/contacts/imports/{job.id}", status_code=303)


async def _job(session: DBSession, import_id: uuid.UUID) -> ContactImport:
    job = await session.get(ContactImport, import_id)
    if job is None:
        raise NotFound("Import not found")
    return job


async def _detail(
    request: Request,
    session: DBSession,
    principal: Principal,
    job: ContactImport,
    *,
    error: str | None = None,
    status_code: int = 200,
    chosen: tuple[list[str], str] | None = None,
) -> HTMLResponse:
    mapping, key = chosen or (list(job.mapping), job.key)
    definitions = await service.definitions(session)
    targets: list[tuple[str, str]] = [("", "imports.skip")]
    targets += [(name, f"imports.field.{name}") for name in STANDARD_FIELDS]
    targets += [
        (TAGS, "imports.field.tags"),
        (OPENID, "imports.field.wechat_openid"),
        (UNIONID, "imports.field.wechat_unionid"),
    ]
    attributes = [(ATTR + d.key, d.label) for d in definitions]
    keys: list[tuple[str, str]] = [(k, f"imports.field.{k}") for k in KEY_FIELDS]
    key_attributes = [
        (ATTR + d.key, d.label) for d in definitions if d.type in (AttributeType.text, AttributeType.number)
    ]
    return render(
        request,
        "contacts/import.html",
        principal,
        status_code=status_code,
        job=job,
        mapping=mapping,
        key=key,
        targets=targets,
        attributes=attributes,
        keys=keys,
        key_attributes=key_attributes,
        accounts=await service.wechat_accounts(session),
        rejections=await service.rejection_page(session, job.id, limit=REJECTIONS_SHOWN),
        rejection_total=await service.rejection_count(session, job.id),
        error=error,
    )


@router.get("/contacts/imports/{import_id}", response_class=HTMLResponse)
async def import_page(
    request: Request, principal: PageContactsRead, session: DBSession, import_id: uuid.UUID
) -> HTMLResponse:
    return await _detail(request, session, principal, await _job(session, import_id))


@router.post("/contacts/imports/{import_id}/start", response_class=HTMLResponse, response_model=None)
async def start_page(
    request: Request, principal: PageContactsWrite, session: DBSession, import_id: uuid.UUID
) -> HTMLResponse | RedirectResponse:
    job = await _job(session, import_id)
    form = await request.form()
    mapping = [str(form.get(f"column_{i}") or "") for i in range(len(job.headers))]
    account = str(form.get("account_id") or "")
    try:
        account_id = uuid.UUID(account) if account else None
        await start_audited(
            session,
            _ctx(request),
            principal,
            job,
            mapping=mapping,
            key=str(form.get("key") or ""),
            account_id=account_id,
        )
    except ValueError:
        return await _detail(request, session, principal, job, error="imports.bad_account", status_code=422)
    except ParleyError as exc:
        # Nothing was changed; the page shows the person's choices again rather than the guesses.
        return await _detail(
            request,
            session,
            principal,
            job,
            error=exc.message,
            status_code=exc.status_code,
            chosen=(mapping, str(form.get("key") or "")),
        )
    return RedirectResponse(f"/contacts/imports/{job.id}", status_code=303)


@router.post("/contacts/imports/{import_id}/cancel")
async def cancel_page(
    principal: PageContactsWrite, session: DBSession, import_id: uuid.UUID
) -> RedirectResponse:
    job = await _job(session, import_id)
    if job.status not in ("done", "failed", "cancelled"):
        await service.cancel_import(session, job)
    return RedirectResponse(f"/contacts/imports/{job.id}", status_code=303)


@router.get("/contacts/imports/{import_id}/rejections.csv", response_class=Response)
async def rejections_page(principal: PageContactsRead, session: DBSession, import_id: uuid.UUID) -> Response:
    job = await _job(session, import_id)
    return csv_response(job, await service.rejections_csv(session, import_id))
