from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import Field, HttpUrl

from parley.channels.base import ChannelType
from parley.kit.schemas import Schema


class SenderRead(Schema):
    id: uuid.UUID
    external_id: str
    phone_number: str
    display_name: str
    is_primary: bool


class SenderCreate(Schema):
    external_id: str = Field(min_length=1, max_length=128, description="WhatsApp phone number id")
    phone_number: str = Field(default="", max_length=32)
    display_name: str = Field(default="", max_length=200)
    is_primary: bool = False


class ChannelAccountCreate(Schema):
    type: ChannelType
    name: str = Field(min_length=1, max_length=120)
    api_base_url: HttpUrl
    credentials: dict[str, Any] = Field(
        description="The platform's settings and secrets, as the channel type's config schema names them"
    )


class ChannelAccountUpdate(Schema):
    name: str | None = Field(default=None, min_length=1, max_length=120)
    api_base_url: HttpUrl | None = None
    is_active: bool | None = None
    credentials: dict[str, Any] | None = Field(
        default=None, description="Only the keys given change; secrets left out keep their value"
    )


class ChannelAccountRead(Schema):
    id: uuid.UUID
    type: ChannelType
    name: str
    api_base_url: str
    external_id: str
    is_active: bool
    config: dict[str, Any]
    secrets: dict[str, str] = Field(description="Masked: only the last characters are shown")
    webhook_url: str
    senders: list[SenderRead]
    created_at: datetime
