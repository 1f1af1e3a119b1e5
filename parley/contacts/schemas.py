from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any, Literal

from pydantic import Field

from parley.kit.schemas import Schema


class TagGroupRead(Schema):
    id: uuid.UUID
    name: str
    color: str
    position: int


class TagGroupWrite(Schema):
    name: str = Field(min_length=1, max_length=100)
    color: str = "#64748b"


class TagGroupUpdate(Schema):
    name: str | None = None
    color: str | None = None


class TagRead(Schema):
    id: uuid.UUID
    name: str
    group_id: uuid.UUID | None
    color: str  # the tag's own colour, or its group's
    contacts: int = 0


class TagWrite(Schema):
    name: str = Field(min_length=1, max_length=100)
    group_id: uuid.UUID | None = None
    color: str = ""


class TagUpdate(Schema):
    name: str | None = None
    group_id: uuid.UUID | None = None
    ungroup: bool = False
    color: str | None = None


class AttributeDefinitionRead(Schema):
    id: uuid.UUID
    key: str
    label: str
    type: str
    options: list[str]
    required: bool
    position: int


class AttributeDefinitionWrite(Schema):
    key: str
    label: str
    type: Literal["text", "number", "date", "boolean", "choice", "multi_choice"]
    options: list[str] = Field(default_factory=list)
    required: bool = False


class AttributeDefinitionUpdate(Schema):
    label: str | None = None
    options: list[str] | None = None
    required: bool | None = None


class IdentityRead(Schema):
    id: uuid.UUID
    kind: str
    scope: str
    value: str
    account_id: uuid.UUID | None
    account_name: str = ""
    channel: str = ""
    verified: bool


class ContactTagRead(Schema):
    id: uuid.UUID
    name: str
    color: str
    source: str = ""


class ContactRead(Schema):
    id: uuid.UUID
    display_name: str
    avatar_url: str
    phone: str | None
    email: str | None
    gender: str
    language: str
    city: str
    province: str
    country: str
    birthday: date | None
    owner_id: uuid.UUID | None
    lifecycle_stage: str
    attributes: dict[str, Any]
    first_followed_at: datetime | None
    last_followed_at: datetime | None
    last_unfollowed_at: datetime | None
    last_inbound_at: datetime | None
    last_outbound_at: datetime | None
    inbound_count: int
    outbound_count: int
    created_at: datetime
    tags: list[ContactTagRead] = Field(default_factory=list)


class ContactDetail(ContactRead):
    identities: list[IdentityRead] = Field(default_factory=list)


class ContactUpdate(Schema):
    """Any subset: ``profile`` standard fields, custom ``attributes`` (null clears), ``owner_id``."""

    profile: dict[str, Any] = Field(default_factory=dict)
    attributes: dict[str, Any] = Field(default_factory=dict)
    owner_id: uuid.UUID | None = None
    clear_owner: bool = False


class TimelineItemRead(Schema):
    at: datetime
    kind: str
    channel: str
    account: str
    direction: str
    text: str
    data: dict[str, Any]
    conversation_id: uuid.UUID | None


class LocationRead(Schema):
    at: datetime
    latitude: float
    longitude: float
    precision: float | None
    label: str
    source: str


class Selection(Schema):
    """Which contacts a bulk action applies to: listed ids, or everything matching a list query."""

    contact_ids: list[uuid.UUID] = Field(default_factory=list, max_length=10_000)
    all_matching: bool = False
    q: str = ""
    tag_id: uuid.UUID | None = None
    segment_id: uuid.UUID | None = None
    stage: str = ""
    filter: dict[str, Any] | None = None


class BulkTags(Selection):
    tag_ids: list[uuid.UUID] = Field(default_factory=list)
    tag_names: list[str] = Field(default_factory=list)


class BulkOwner(Selection):
    owner_id: uuid.UUID | None = None


class BulkResult(Schema):
    contacts: int
    changed: int


class SegmentRead(Schema):
    id: uuid.UUID
    name: str
    description: str
    definition: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class SegmentWrite(Schema):
    name: str
    description: str = ""
    definition: dict[str, Any]


class SegmentUpdate(Schema):
    name: str | None = None
    description: str | None = None
    definition: dict[str, Any] | None = None


class CountRequest(Schema):
    definition: dict[str, Any]


class CountRead(Schema):
    count: int
    ms: float


class LifecycleRules(Schema):
    """Stage rules: ``new`` until the first inbound message, ``active`` after it, ``dormant`` after
    ``dormant_after_days`` without an inbound message, ``lost`` once unfollowed (when ``lost_on_unfollow``)."""

    dormant_after_days: int = Field(default=60, ge=1, le=3650)
    lost_on_unfollow: bool = True
    lost_after_days: int | None = Field(default=None, ge=1, le=3650)
