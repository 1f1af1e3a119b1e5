"""REST API for conversations and messages: what the console does, external systems can do."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Query, Request, UploadFile, status
from sqlalchemy import select

from parley.auth.dependencies import Authenticated, DBSession, authorize
from parley.auth.permissions import Permission
from parley.auth.service import Principal
from parley.context import Context
from parley.conversations.schemas import (
    AssignUpdate,
    CannedResponseCreate,
    CannedResponseRead,
    ContactReasonCreate,
    ContactReasonRead,
    ConversationDetail,
    ConversationRead,
    MessageRead,
    PresenceUpdate,
    ReplyCreate,
    StatusUpdate,
)
from parley.conversations.service import conversation as conversation_service
from parley.conversations.service import set_presence
from parley.exceptions import Conflict, NotFound
from parley.kit.schemas import Page
from parley.models import CannedResponse, ContactReason

ConversationsRead = Annotated[Principal, Depends(authorize(Permission.conversations_read))]
ConversationsWrite = Annotated[Principal, Depends(authorize(Permission.conversations_write))]
SettingsWrite = Annotated[Principal, Depends(authorize(Permission.roles_write))]

router = APIRouter(prefix="/api/v1", tags=["conversations"])


def _ctx(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


@router.get("/conversations", response_model=Page[ConversationRead])
async def list_conversations(
    principal: ConversationsRead,
    session: DBSession,
    view: str = Query("all", pattern="^(mine|unassigned|team|all)$"),
    status: str | None = Query("open", pattern="^(open|pending|snoozed|resolved)$"),
    channel: str | None = None,
    account_id: uuid.UUID | None = None,
    q: str | None = None,
    limit: int = Query(50, ge=1, le=200),
    offset: int = Query(0, ge=0),
) -> Page[ConversationRead]:
    items, total = await conversation_service.search(
        session,
        principal=principal,
        view=view,
        status=status,
        channel=channel,
        account_id=account_id,
        query=q,
        limit=limit,
        offset=offset,
    )
    return Page[ConversationRead](items=items, total=total)


@router.get("/conversations/{conversation_id}", response_model=ConversationDetail)
async def read_conversation(
    _: ConversationsRead,
    session: DBSession,
    conversation_id: uuid.UUID,
    before_id: int | None = None,
    limit: int = Query(50, ge=1, le=200),
) -> ConversationDetail:
    return await conversation_service.detail(session, conversation_id, before_id=before_id, limit=limit)


@router.post(
    "/conversations/{conversation_id}/messages",
    response_model=MessageRead,
    status_code=status.HTTP_201_CREATED,
    responses={422: {"description": "Outside the reply window, or an invalid message"}},
)
async def send_message(
    request: Request,
    principal: ConversationsWrite,
    session: DBSession,
    conversation_id: uuid.UUID,
    data: ReplyCreate,
) -> MessageRead:
    message = await conversation_service.reply(
        session, _ctx(request), actor=principal, conversation_id=conversation_id, data=data
    )
    read = MessageRead.model_validate(message)
    read.author_name = principal.user.name
    return read


@router.post("/conversations/{conversation_id}/read", status_code=status.HTTP_204_NO_CONTENT)
async def mark_conversation_read(
    request: Request, _: ConversationsRead, session: DBSession, conversation_id: uuid.UUID
) -> None:
    await conversation_service.mark_read(session, _ctx(request), conversation_id=conversation_id)


@router.post("/conversations/{conversation_id}/accept", status_code=status.HTTP_204_NO_CONTENT)
async def accept_conversation(
    request: Request, principal: ConversationsWrite, session: DBSession, conversation_id: uuid.UUID
) -> None:
    await conversation_service.accept(
        session, _ctx(request), actor=principal, conversation_id=conversation_id
    )


@router.post("/conversations/{conversation_id}/assign", status_code=status.HTTP_204_NO_CONTENT)
async def assign_conversation(
    request: Request,
    principal: ConversationsWrite,
    session: DBSession,
    conversation_id: uuid.UUID,
    data: AssignUpdate,
) -> None:
    await conversation_service.assign(
        session, _ctx(request), actor=principal, conversation_id=conversation_id, data=data
    )


@router.post("/conversations/{conversation_id}/status", status_code=status.HTTP_204_NO_CONTENT)
async def change_conversation_status(
    request: Request,
    principal: ConversationsWrite,
    session: DBSession,
    conversation_id: uuid.UUID,
    data: StatusUpdate,
) -> None:
    await conversation_service.set_status(
        session, _ctx(request), actor=principal, conversation_id=conversation_id, data=data
    )


@router.put("/messages/{message_id}/pin", status_code=status.HTTP_204_NO_CONTENT)
async def pin_message(
    request: Request, principal: ConversationsWrite, session: DBSession, message_id: int
) -> None:
    await conversation_service.pin(
        session, _ctx(request), actor=principal, message_id=message_id, pinned=True
    )


@router.delete("/messages/{message_id}/pin", status_code=status.HTTP_204_NO_CONTENT)
async def unpin_message(
    request: Request, principal: ConversationsWrite, session: DBSession, message_id: int
) -> None:
    await conversation_service.pin(
        session, _ctx(request), actor=principal, message_id=message_id, pinned=False
    )


@router.put("/me/presence", status_code=status.HTTP_204_NO_CONTENT, tags=["me"])
async def update_my_presence(
    request: Request, principal: Authenticated, session: DBSession, data: PresenceUpdate
) -> None:
    await set_presence(session, _ctx(request), actor=principal, presence=data.presence)


@router.get("/contact-reasons", response_model=list[ContactReasonRead])
async def list_contact_reasons(_: ConversationsRead, session: DBSession) -> list[ContactReasonRead]:
    rows = await session.scalars(
        select(ContactReason)
        .where(ContactReason.is_active.is_(True))
        .order_by(ContactReason.position, ContactReason.name)
    )
    return [ContactReasonRead.model_validate(r) for r in rows]


@router.post("/contact-reasons", response_model=ContactReasonRead, status_code=status.HTTP_201_CREATED)
async def create_contact_reason(
    _: SettingsWrite, session: DBSession, data: ContactReasonCreate
) -> ContactReasonRead:
    reason = ContactReason(name=data.name, parent_id=data.parent_id, position=data.position, is_active=True)
    session.add(reason)
    await session.flush()
    return ContactReasonRead.model_validate(reason)


@router.get("/canned-responses", response_model=list[CannedResponseRead])
async def list_canned_responses(_: ConversationsRead, session: DBSession) -> list[CannedResponseRead]:
    rows = await session.scalars(select(CannedResponse).order_by(CannedResponse.shortcut))
    return [CannedResponseRead.model_validate(r) for r in rows]


@router.post("/canned-responses", response_model=CannedResponseRead, status_code=status.HTTP_201_CREATED)
async def create_canned_response(
    principal: ConversationsWrite, session: DBSession, data: CannedResponseCreate
) -> CannedResponseRead:
    if await session.scalar(select(CannedResponse.id).where(CannedResponse.shortcut == data.shortcut)):
        raise Conflict(f"The shortcut /{data.shortcut} is taken")
    row = CannedResponse(
        shortcut=data.shortcut, title=data.title, body=data.body, created_by_id=principal.user.id
    )
    session.add(row)
    await session.flush()
    return CannedResponseRead.model_validate(row)


@router.get("/agents", tags=["conversations"])
async def list_agents(_: ConversationsRead, session: DBSession) -> list[dict[str, str]]:
    """Active people who can be assigned conversations, with their presence."""
    from parley.models import Role, User

    rows = await session.execute(
        select(User.id, User.name, User.presence, Role.permissions)
        .join(Role, Role.id == User.role_id)
        .where(User.is_active.is_(True))
        .order_by(User.name)
    )
    return [
        {"id": str(user_id), "name": name, "presence": presence}
        for user_id, name, presence, permissions in rows
        if Permission.conversations_write.value in permissions
    ]


MEDIA_KINDS = {"image": "image", "video": "video", "audio": "voice"}


@router.post("/conversations/{conversation_id}/media", status_code=status.HTTP_201_CREATED)
async def upload_conversation_media(
    request: Request,
    _: ConversationsWrite,
    conversation_id: uuid.UUID,
    file: Annotated[UploadFile, File(description="The image or file to send")],
) -> dict[str, str | None]:
    """Uploads a file to the conversation's platform and returns what a reply needs to send it.

    The file goes to the platform's media store (WeChat temporary media, WhatsApp media), not to Parley's disk.
    """
    from parley.channels.base import ChannelError
    from parley.channels.runtime import runtime
    from parley.db import session_scope
    from parley.exceptions import ServiceBusy, UnprocessableEntity
    from parley.models import ChannelAccount, Conversation

    # A read only: the platform call below may refresh a shared token, which writes.
    async with session_scope(_ctx(request).sessionmaker, write=False) as session:
        conversation = await session.get(Conversation, conversation_id)
        if conversation is None:
            raise NotFound("Conversation not found")
        account = await session.get(ChannelAccount, conversation.account_id)
        if account is None:
            raise NotFound("Channel account not found")
    content = await file.read()
    mime_type = file.content_type or "application/octet-stream"
    filename = file.filename or "upload"
    kind = MEDIA_KINDS.get(mime_type.split("/", 1)[0], "file")
    adapter = runtime(_ctx(request)).adapter(account)
    client: Any = getattr(adapter, "client", None)
    if client is None:
        raise UnprocessableEntity("This channel does not take uploads")
    try:
        if account.type == "wechat":
            if kind == "file":
                raise UnprocessableEntity(
                    "WeChat customer-service messages cannot carry files; send an image, voice or video"
                )
            uploaded = await client.upload_media(kind, filename, content, mime_type)
            media_id = str(uploaded["media_id"])
        elif account.type == "whatsapp":
            media_id = await client.upload_media(
                account.external_id, content, mime_type=mime_type, filename=filename
            )
        else:
            raise UnprocessableEntity("This channel does not take uploads")
    except ChannelError as exc:
        raise ServiceBusy(f"The platform did not take the file: {exc.message}", retry_after_s=5) from exc
    return {"type": kind, "media_id": media_id, "mime_type": mime_type, "filename": filename}
