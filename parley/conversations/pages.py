"""Settings → Inbox: contact reasons, saved replies and the idle auto-close time."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import select

from parley.auth.dependencies import DBSession
from parley.auth.permissions import Permission
from parley.auth.service import Principal, audit
from parley.conversations.lifecycle import idle_close_minutes, set_idle_close_minutes
from parley.models import CannedResponse, ContactReason
from parley.web.auth import page
from parley.web.rendering import render

router = APIRouter(include_in_schema=False)
PageInboxSettings = Annotated[Principal, Depends(page(Permission.roles_write))]


async def _render(
    request: Request,
    session: DBSession,
    principal: Principal,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    reasons = list(
        (
            await session.scalars(select(ContactReason).order_by(ContactReason.position, ContactReason.name))
        ).all()
    )
    canned = list((await session.scalars(select(CannedResponse).order_by(CannedResponse.shortcut))).all())
    return render(
        request,
        "settings/inbox.html",
        principal,
        status_code=status_code,
        reasons=reasons,
        canned=canned,
        idle_minutes=await idle_close_minutes(session),
        error=error,
    )


@router.get("/settings/inbox", response_class=HTMLResponse)
async def inbox_settings_page(
    request: Request, session: DBSession, principal: PageInboxSettings
) -> HTMLResponse:
    return await _render(request, session, principal)


@router.post("/settings/inbox/idle", response_class=HTMLResponse, response_model=None)
async def save_idle(
    request: Request, session: DBSession, principal: PageInboxSettings, minutes: int = Form(...)
) -> HTMLResponse | RedirectResponse:
    if not 5 <= minutes <= 60 * 24 * 30:
        return await _render(
            request, session, principal, error="Choose between 5 minutes and 30 days", status_code=422
        )
    before = await idle_close_minutes(session)
    await set_idle_close_minutes(session, minutes)
    await audit.record(
        session,
        actor=principal,
        action="inbox.idle_close",
        target_type="setting",
        target_id=None,
        changes={"from": before, "to": minutes},
    )
    return RedirectResponse("/settings/inbox?saved=1", status_code=303)


@router.post("/settings/inbox/reasons", response_class=HTMLResponse, response_model=None)
async def add_reason(
    request: Request,
    session: DBSession,
    principal: PageInboxSettings,
    name: str = Form(""),
    parent_id: str = Form(""),
) -> HTMLResponse | RedirectResponse:
    name = name.strip()
    if not name:
        return await _render(
            request, session, principal, error="A contact reason needs a name", status_code=422
        )
    parent = uuid.UUID(parent_id) if parent_id else None
    if parent is not None and await session.get(ContactReason, parent) is None:
        return await _render(request, session, principal, error="Unknown parent reason", status_code=422)
    reason = ContactReason(name=name[:120], parent_id=parent, position=0, is_active=True)
    session.add(reason)
    await session.flush()
    await audit.record(
        session,
        actor=principal,
        action="contact_reason.create",
        target_type="contact_reason",
        target_id=reason.id,
        changes={"name": reason.name},
    )
    return RedirectResponse("/settings/inbox", status_code=303)


@router.post("/settings/inbox/reasons/{reason_id}/retire")
async def retire_reason(
    session: DBSession, principal: PageInboxSettings, reason_id: uuid.UUID
) -> RedirectResponse:
    reason = await session.get(ContactReason, reason_id)
    if reason is not None:
        # Retired, not deleted: closed conversations keep pointing at it for reports.
        reason.is_active = False
        await audit.record(
            session,
            actor=principal,
            action="contact_reason.retire",
            target_type="contact_reason",
            target_id=reason.id,
            changes={"name": reason.name},
        )
    return RedirectResponse("/settings/inbox", status_code=303)


@router.post("/settings/inbox/canned", response_class=HTMLResponse, response_model=None)
async def add_canned(
    request: Request,
    session: DBSession,
    principal: PageInboxSettings,
    shortcut: str = Form(""),
    title: str = Form(""),
    body: str = Form(""),
) -> HTMLResponse | RedirectResponse:
    shortcut = shortcut.strip().lstrip("/")
    if not shortcut or not body.strip() or not shortcut.replace("-", "").replace("_", "").isalnum():
        return await _render(
            request,
            session,
            principal,
            error="A saved reply needs a shortcut (letters, digits, - or _) and a text",
            status_code=422,
        )
    if await session.scalar(select(CannedResponse.id).where(CannedResponse.shortcut == shortcut)):
        return await _render(
            request, session, principal, error=f"The shortcut /{shortcut} is taken", status_code=409
        )
    session.add(
        CannedResponse(
            shortcut=shortcut[:64],
            title=title.strip()[:200],
            body=body.strip(),
            created_by_id=principal.user.id,
        )
    )
    return RedirectResponse("/settings/inbox", status_code=303)


@router.post("/settings/inbox/canned/{canned_id}/delete")
async def delete_canned(
    session: DBSession, principal: PageInboxSettings, canned_id: uuid.UUID
) -> RedirectResponse:
    row = await session.get(CannedResponse, canned_id)
    if row is not None:
        await session.delete(row)
    return RedirectResponse("/settings/inbox", status_code=303)
