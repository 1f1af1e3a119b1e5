from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from parley.channels.base import Location, Media, Template
from parley.kit.schemas import Schema


class ConversationRead(Schema):
    id: uuid.UUID
    account_id: uuid.UUID
    account_name: str
    channel: str
    contact_id: uuid.UUID
    contact_name: str
    status: str
    snoozed_until: datetime | None
    assignee_id: uuid.UUID | None
    assignee_name: str | None
    team_id: uuid.UUID | None
    priority: int
    unread_count: int
    last_message_at: datetime | None
    last_inbound_at: datetime | None
    last_message_preview: str
    contact_reason_id: uuid.UUID | None
    created_at: datetime


class MessageRead(Schema):
    id: int
    conversation_id: uuid.UUID | None
    direction: str
    kind: str
    type: str
    text: str | None
    content: dict[str, Any]
    status: str
    author_id: uuid.UUID | None
    author_name: str | None = None
    error_code: str | None
    error_reason: str | None
    created_at: datetime
    sent_at: datetime | None
    delivered_at: datetime | None
    read_at: datetime | None
    pinned_at: datetime | None


class IdentityRead(Schema):
    kind: str
    value: str
    account_id: uuid.UUID | None
    verified: bool


class ContactBrief(Schema):
    id: uuid.UUID
    display_name: str
    phone: str | None
    email: str | None
    avatar_url: str
    city: str
    country: str
    lifecycle_stage: str
    identities: list[IdentityRead]
    tags: list[str] = Field(default_factory=list)


class WindowRead(Schema):
    open: bool
    closes_at: datetime | None
    remaining: int | None
    reason: str


class ConversationDetail(Schema):
    conversation: ConversationRead
    contact: ContactBrief
    messages: list[MessageRead]
    pinned: list[MessageRead]
    window: WindowRead
    recent_conversations: list[ConversationRead]


class ReplyCreate(Schema):
    """What an agent (or an integration) sends in a conversation."""

    type: Literal[
        "text", "image", "file", "video", "voice", "location", "template", "note", "interactive"
    ] = "text"
    text: str | None = Field(default=None, max_length=4096)
    media: Media | None = None
    location: Location | None = None
    template: Template | None = None
    interactive: dict[str, Any] | None = None


class AssignUpdate(Schema):
    assignee_id: uuid.UUID | None = None
    team_id: uuid.UUID | None = None


class StatusUpdate(Schema):
    status: Literal["open", "pending", "snoozed", "resolved"]
    snoozed_until: datetime | None = None
    contact_reason_id: uuid.UUID | None = None


class PresenceUpdate(Schema):
    presence: Literal["online", "away", "offline"]


class ContactReasonRead(Schema):
    id: uuid.UUID
    parent_id: uuid.UUID | None
    name: str
    position: int


class ContactReasonCreate(Schema):
    name: str = Field(min_length=1, max_length=120)
    parent_id: uuid.UUID | None = None
    position: int = 0


class CannedResponseRead(Schema):
    id: uuid.UUID
    shortcut: str
    title: str
    body: str


class CannedResponseCreate(Schema):
    shortcut: str = Field(min_length=1, max_length=64, pattern=r"^[\w\-]+$")
    title: str = ""
    body: str = Field(min_length=1, max_length=4096)
