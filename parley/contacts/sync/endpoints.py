"""Follower sync: REST under ``/api/v1/contacts/sync`` and the console page ``/contacts/sync``.

Reading needs ``contacts.read``; starting a sync needs ``contacts.write``
(it creates contacts) and is audited.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from parley.auth.dependencies import DBSession, authorize
from parley.auth.permissions import Permission
from parley.auth.service import Principal, audit
from parley.contacts.imports.service import wechat_accounts
from parley.contacts.sync import service
from parley.exceptions import NotFound, ParleyError
from parley.kit.schemas import Schema
from parley.models import ChannelAccount, FollowerSync
from parley.web.auth import page
from parley.web.rendering import render

ContactsRead = Annotated[Principal, Depends(authorize(Permission.contacts_read))]
ContactsWrite = Annotated[Principal, Depends(authorize(Permission.contacts_write))]
PageContactsRead = Annotated[Principal, Depends(page(Permission.contacts_read))]
PageContactsWrite = Annotated[Principal, Depends(page(Permission.contacts_write))]

router = APIRouter(prefix="/api/v1/contacts/sync", tags=["contacts"])
pages = APIRouter(include_in_schema=False)


class SyncStart(Schema):
    account_id: uuid.UUID


class SyncRead(Schema):
    id: uuid.UUID
    account_id: uuid.UUID
    status: str
    next_openid: str
    pages: int
    total_followers: int
    followers_seen: int
    contacts_created: int
    profiles_total: int
    profiles_fetched: int
    due_at: datetime | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


async def _start(session: DBSession, principal: Principal, account_id: uuid.UUID) -> FollowerSync:
    account = await session.get(ChannelAccount, account_id)
    if account is None:
        raise NotFound("Channel account not found")
    sync = await service.start_sync(session, account, actor_id=principal.user.id)
    await audit.record(
        session,
        actor=principal,
        action="contacts.follower_sync.start",
        target_type="channel_account",
        target_id=account.id,
        changes={"sync_id": str(sync.id)},
    )
    return sync


@router.post("", status_code=status.HTTP_201_CREATED)
async def start_sync(principal: ContactsWrite, session: DBSession, data: SyncStart) -> SyncRead:
    """Starts bringing every follower of a WeChat account in as a contact (409 if one is running)."""
    return SyncRead.model_validate(await _start(session, principal, data.account_id))


@router.get("")
async def list_syncs(_: ContactsRead, session: DBSession) -> list[SyncRead]:
    return [SyncRead.model_validate(s) for s in await service.recent_syncs(session, limit=50)]


@router.get("/{sync_id}")
async def get_sync(_: ContactsRead, session: DBSession, sync_id: uuid.UUID) -> SyncRead:
    sync = await session.get(FollowerSync, sync_id)
    if sync is None:
        raise NotFound("Sync not found")
    return SyncRead.model_validate(sync)


async def _page(
    request: Request,
    session: DBSession,
    principal: Principal,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    accounts = await wechat_accounts(session)
    syncs = await service.recent_syncs(session)
    return render(
        request,
        "contacts/sync.html",
        principal,
        status_code=status_code,
        accounts=accounts,
        names={a.id: a.name for a in accounts},
        syncs=syncs,
        error=error,
    )


@pages.get("/contacts/sync", response_class=HTMLResponse)
async def sync_page(request: Request, principal: PageContactsRead, session: DBSession) -> HTMLResponse:
    return await _page(request, session, principal)


@pages.post("/contacts/sync", response_class=HTMLResponse, response_model=None)
async def start_sync_page(
    request: Request, principal: PageContactsWrite, session: DBSession, account_id: uuid.UUID = Form(...)
) -> Response:
    try:
        await _start(session, principal, account_id)
    except ParleyError as exc:
        return await _page(request, session, principal, error=exc.message, status_code=exc.status_code)
    return RedirectResponse("/contacts/sync", status_code=303)
