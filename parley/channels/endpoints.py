"""Channel accounts over the REST API, and the platforms' webhooks."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Request, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from parley.auth.dependencies import DBSession, authorize
from parley.auth.permissions import Permission
from parley.auth.service import Principal
from parley.channels.base import (
    ChannelType,
    MalformedPayloadError,
    SignatureError,
    WebhookAck,
    WebhookRequest,
)
from parley.channels.edge import problem, process_webhook
from parley.channels.runtime import runtime
from parley.channels.schemas import (
    ChannelAccountCreate,
    ChannelAccountRead,
    ChannelAccountUpdate,
    SenderCreate,
    SenderRead,
)
from parley.channels.service import channel_account
from parley.context import Context
from parley.conversations.intake import intake_of
from parley.exceptions import NotFound
from parley.models import ChannelAccount

log = structlog.get_logger()

ChannelsRead = Annotated[Principal, Depends(authorize(Permission.channels_read))]
ChannelsWrite = Annotated[Principal, Depends(authorize(Permission.channels_write))]

router = APIRouter(prefix="/api/v1/channel-accounts", tags=["channels"])
webhooks = APIRouter(tags=["webhooks"])


def _ctx(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


def _read(request: Request, account: ChannelAccount) -> ChannelAccountRead:
    ctx = _ctx(request)
    return channel_account.read(account, box=ctx.secret_box, base_url=ctx.settings.base_url)


@router.get("", response_model=list[ChannelAccountRead])
async def list_channel_accounts(
    request: Request, _: ChannelsRead, session: DBSession, type: ChannelType | None = None
) -> list[ChannelAccountRead]:
    accounts = await channel_account.list_accounts(session, channel_type=type.value if type else None)
    return [_read(request, a) for a in accounts]


@router.post(
    "",
    response_model=ChannelAccountRead,
    status_code=status.HTTP_201_CREATED,
    responses={409: {"description": "Already connected"}, 422: {"description": "Invalid credentials"}},
)
async def create_channel_account(
    request: Request, principal: ChannelsWrite, session: DBSession, data: ChannelAccountCreate
) -> ChannelAccountRead:
    account = await channel_account.create(session, actor=principal, box=_ctx(request).secret_box, data=data)
    return _read(request, await channel_account.get(session, account.id))


@router.get("/{account_id}", response_model=ChannelAccountRead)
async def read_channel_account(
    request: Request, _: ChannelsRead, session: DBSession, account_id: uuid.UUID
) -> ChannelAccountRead:
    return _read(request, await channel_account.get(session, account_id))


@router.patch("/{account_id}", response_model=ChannelAccountRead)
async def update_channel_account(
    request: Request,
    principal: ChannelsWrite,
    session: DBSession,
    account_id: uuid.UUID,
    data: ChannelAccountUpdate,
) -> ChannelAccountRead:
    await channel_account.update(
        session, actor=principal, box=_ctx(request).secret_box, account_id=account_id, data=data
    )
    return _read(request, await channel_account.get(session, account_id))


@router.post("/{account_id}/senders", response_model=SenderRead, status_code=status.HTTP_201_CREATED)
async def add_sender(
    principal: ChannelsWrite, session: DBSession, account_id: uuid.UUID, data: SenderCreate
) -> SenderRead:
    sender = await channel_account.add_sender(session, actor=principal, account_id=account_id, data=data)
    return SenderRead.model_validate(sender)


@router.post("/{account_id}/senders/{sender_id}/primary", status_code=status.HTTP_204_NO_CONTENT)
async def make_sender_primary(
    principal: ChannelsWrite, session: DBSession, account_id: uuid.UUID, sender_id: uuid.UUID
) -> None:
    await channel_account.make_primary(session, actor=principal, account_id=account_id, sender_id=sender_id)


def _answer(ack: WebhookAck) -> Response:
    return Response(ack.body, media_type=ack.media_type, status_code=ack.status_code)


def _problem(status_code: int, error: str, detail: str) -> Response:
    return _answer(problem(status_code, error, detail))


async def _account(session: AsyncSession, channel_type: ChannelType, account_id: uuid.UUID) -> ChannelAccount:
    account = await session.get(ChannelAccount, account_id)
    if account is None or account.type != channel_type.value or not account.is_active:
        raise NotFound("No active channel account at this webhook address")
    return account


def _webhook_request(request: Request, body: bytes) -> WebhookRequest:
    return WebhookRequest(
        method=request.method,
        query=dict(request.query_params),
        headers={k.lower(): v for k, v in request.headers.items()},
        body=body,
    )


@webhooks.get("/channels/{channel_type}/{account_id}/webhook")
async def verify_webhook(
    request: Request, session: DBSession, channel_type: ChannelType, account_id: uuid.UUID
) -> Response:
    """The platform's URL verification handshake."""
    account = await _account(session, channel_type, account_id)
    adapter = runtime(_ctx(request)).adapter(account)
    try:
        ack = adapter.handshake(_webhook_request(request, b""))
    except SignatureError as exc:
        return _problem(403, "SignatureError", exc.message)
    except MalformedPayloadError as exc:
        return _problem(400, "MalformedPayloadError", exc.message)
    return _answer(ack)


@webhooks.post("/channels/{channel_type}/{account_id}/webhook")
async def receive_webhook(request: Request, channel_type: ChannelType, account_id: uuid.UUID) -> Response:
    """Verify, parse, store once, answer: the platform's delivery of messages, events and statuses.

    Verification and parsing happen outside any transaction; storing and the
    pipeline run in this process's intake, which commits many webhooks' work
    in one transaction (group commit). The platform gets its answer only after
    that commit, and an answer that makes it retry when the work was not stored.

    ``parley serve`` answers this POST ahead of FastAPI (``parley.channels.edge``) with the
    same :func:`process_webhook`; this route is what the API docs list.
    """
    ctx = _ctx(request)
    webhook = _webhook_request(request, await request.body())
    return _answer(await process_webhook(ctx, intake_of(ctx), channel_type, account_id, webhook))


@router.get("/{account_id}/templates")
async def list_account_templates(
    request: Request,
    _: Annotated[Principal, Depends(authorize(Permission.conversations_read))],
    session: DBSession,
    account_id: uuid.UUID,
) -> list[dict[str, Any]]:
    """The account's approved templates, fetched from the platform."""
    from parley.channels.base import ChannelError
    from parley.channels.templates import approved_templates
    from parley.exceptions import ServiceBusy

    account = await channel_account.get(session, account_id)
    try:
        return await approved_templates(account.type, runtime(_ctx(request)).adapter(account))
    except ChannelError as exc:
        raise ServiceBusy(f"The platform did not list templates: {exc.message}", retry_after_s=5) from exc
