"""Console pages for channel accounts (Settings → Channels)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from parley.auth.dependencies import DBSession
from parley.auth.permissions import Permission
from parley.auth.service import Principal
from parley.channels.base import ChannelType
from parley.channels.schemas import ChannelAccountCreate, ChannelAccountUpdate, SenderCreate
from parley.channels.service import channel_account
from parley.context import Context
from parley.exceptions import ParleyError
from parley.web.auth import page
from parley.web.rendering import render

router = APIRouter(include_in_schema=False)
PageChannelsRead = Annotated[Principal, Depends(page(Permission.channels_read))]
PageChannelsWrite = Annotated[Principal, Depends(page(Permission.channels_write))]


@dataclass(frozen=True)
class Field:
    name: str
    secret: bool = False
    required: bool = True
    choices: tuple[str, ...] = ()


FIELDS: dict[ChannelType, list[Field]] = {
    ChannelType.wechat: [
        Field("app_id"),
        Field("app_secret", secret=True),
        Field("token", secret=True),
        Field("encoding_aes_key", secret=True, required=False),
        Field("encryption_mode", choices=("safe", "compatible", "plain")),
        Field("original_id", required=False),
    ],
    ChannelType.whatsapp: [
        Field("phone_number_id"),
        Field("business_account_id"),
        Field("access_token", secret=True),
        Field("app_secret", secret=True),
        Field("verify_token", secret=True),
    ],
}
DEFAULT_API = {
    ChannelType.wechat: "https://api.weixin.qq.com",
    ChannelType.whatsapp: "https://graph.facebook.com",
}


def _ctx(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


def _message(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    if isinstance(exc, ParleyError):
        return exc.message
    raise exc


@router.get("/settings/channels", response_class=HTMLResponse)
async def channels_page(request: Request, session: DBSession, principal: PageChannelsRead) -> HTMLResponse:
    ctx = _ctx(request)
    accounts = [
        channel_account.read(a, box=ctx.secret_box, base_url=ctx.settings.base_url)
        for a in await channel_account.list_accounts(session)
    ]
    return render(request, "settings/channels.html", principal, accounts=accounts)


@router.get("/settings/channels/new", response_class=HTMLResponse)
async def new_channel_page(
    request: Request, principal: PageChannelsWrite, type: ChannelType = ChannelType.wechat
) -> HTMLResponse:
    return render(
        request,
        "settings/channel_form.html",
        principal,
        channel_type=type,
        fields=FIELDS[type],
        edit=None,
        values={"api_base_url": DEFAULT_API[type], "encryption_mode": "safe"},
        error=None,
    )


@router.post("/settings/channels/new", response_class=HTMLResponse)
async def create_channel_page(request: Request, session: DBSession, principal: PageChannelsWrite) -> Response:
    form = await request.form()
    channel_type = ChannelType(str(form.get("type", "wechat")))
    values = {k: str(v) for k, v in form.items() if k != "csrf_token"}
    credentials = {f.name: values[f.name] for f in FIELDS[channel_type] if values.get(f.name)}
    try:
        data = ChannelAccountCreate(
            type=channel_type,
            name=values.get("name", ""),
            api_base_url=values.get("api_base_url", ""),
            credentials=credentials,
        )
        account = await channel_account.create(
            session, actor=principal, box=_ctx(request).secret_box, data=data
        )
    except (ValidationError, ParleyError) as exc:
        return render(
            request,
            "settings/channel_form.html",
            principal,
            status_code=422,
            channel_type=channel_type,
            fields=FIELDS[channel_type],
            edit=None,
            values=values,
            error=_message(exc),
        )
    return RedirectResponse(f"/settings/channels/{account.id}?created=1", status_code=303)


async def _edit(
    request: Request,
    session: DBSession,
    principal: Principal,
    account_id: uuid.UUID,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    ctx = _ctx(request)
    account = await channel_account.get(session, account_id)
    read = channel_account.read(account, box=ctx.secret_box, base_url=ctx.settings.base_url)
    channel_type = ChannelType(account.type)
    values: dict[str, Any] = {"name": read.name, "api_base_url": read.api_base_url, **read.config}
    return render(
        request,
        "settings/channel_form.html",
        principal,
        status_code=status_code,
        channel_type=channel_type,
        fields=FIELDS[channel_type],
        edit=read,
        values=values,
        error=error,
    )


@router.get("/settings/channels/{account_id}", response_class=HTMLResponse)
async def edit_channel_page(
    request: Request, session: DBSession, principal: PageChannelsRead, account_id: uuid.UUID
) -> HTMLResponse:
    return await _edit(request, session, principal, account_id)


@router.post("/settings/channels/{account_id}", response_class=HTMLResponse)
async def update_channel_page(
    request: Request, session: DBSession, principal: PageChannelsWrite, account_id: uuid.UUID
) -> Response:
    form = await request.form()
    account = await channel_account.get(session, account_id)
    channel_type = ChannelType(account.type)
    # Secrets left empty keep their stored value; other fields are sent as shown.
    credentials = {
        f.name: str(form.get(f.name))
        for f in FIELDS[channel_type]
        if form.get(f.name) and str(form.get(f.name)) != str(account.config.get(f.name, ""))
    }
    try:
        data = ChannelAccountUpdate(
            name=str(form.get("name", "")),
            api_base_url=str(form.get("api_base_url", "")),
            is_active=bool(form.get("is_active")),
            credentials=credentials or None,
        )
        await channel_account.update(
            session, actor=principal, box=_ctx(request).secret_box, account_id=account_id, data=data
        )
    except (ValidationError, ParleyError) as exc:
        await session.rollback()
        return await _edit(request, session, principal, account_id, error=_message(exc), status_code=422)
    return RedirectResponse(f"/settings/channels/{account_id}?saved=1", status_code=303)


@router.post("/settings/channels/{account_id}/senders", response_class=HTMLResponse)
async def add_sender_page(
    request: Request, session: DBSession, principal: PageChannelsWrite, account_id: uuid.UUID
) -> Response:
    form = await request.form()
    try:
        data = SenderCreate(
            external_id=str(form.get("external_id", "")),
            phone_number=str(form.get("phone_number", "")),
            display_name=str(form.get("display_name", "")),
            is_primary=bool(form.get("is_primary")),
        )
        await channel_account.add_sender(session, actor=principal, account_id=account_id, data=data)
    except (ValidationError, ParleyError) as exc:
        await session.rollback()
        return await _edit(request, session, principal, account_id, error=_message(exc), status_code=422)
    return RedirectResponse(f"/settings/channels/{account_id}", status_code=303)


@router.post("/settings/channels/{account_id}/senders/{sender_id}/primary")
async def primary_sender_page(
    session: DBSession, principal: PageChannelsWrite, account_id: uuid.UUID, sender_id: uuid.UUID
) -> RedirectResponse:
    await channel_account.make_primary(session, actor=principal, account_id=account_id, sender_id=sender_id)
    return RedirectResponse(f"/settings/channels/{account_id}", status_code=303)
