"""Pydantic shapes of the Cloud API webhook body (PROTOCOLS.md 2.2–2.3).

Every model ignores unknown fields (Meta adds fields without notice) but checks
the types of the fields we read, so ``"entry": "x"`` is rejected rather than
half-parsed. Objects we pass through to ``InboundEvent.data`` untouched
(contacts cards, orders, referrals) stay plain dicts.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Tolerant(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class GraphErrorData(_Tolerant):
    details: str | None = None


class WebhookError(_Tolerant):
    code: int | None = None
    title: str | None = None
    message: str | None = None
    error_data: GraphErrorData | None = None
    href: str | None = None

    @property
    def detail(self) -> str | None:
        return self.error_data.details if self.error_data and self.error_data.details else self.message


class Metadata(_Tolerant):
    display_phone_number: str | None = None
    phone_number_id: str


class Profile(_Tolerant):
    name: str | None = None
    username: str | None = None


class Contact(_Tolerant):
    profile: Profile | None = None
    wa_id: str | None = None
    user_id: str | None = None
    parent_user_id: str | None = None
    username: str | None = None


class Text(_Tolerant):
    body: str


class MediaObject(_Tolerant):
    id: str | None = None
    mime_type: str | None = None
    sha256: str | None = None
    caption: str | None = None
    filename: str | None = None
    voice: bool | None = None
    animated: bool | None = None
    url: str | None = None


class LocationObject(_Tolerant):
    latitude: float
    longitude: float
    name: str | None = None
    address: str | None = None
    url: str | None = None


class Reply(_Tolerant):
    id: str
    title: str | None = None
    description: str | None = None


class FlowReply(_Tolerant):
    name: str | None = None
    body: str | None = None
    response_json: str | None = None


class Interactive(_Tolerant):
    type: str
    button_reply: Reply | None = None
    list_reply: Reply | None = None
    nfm_reply: FlowReply | None = None
    call_permission_reply: dict[str, Any] | None = None


class Button(_Tolerant):
    payload: str | None = None
    text: str | None = None


class Reaction(_Tolerant):
    message_id: str
    emoji: str | None = None


class System(_Tolerant):
    type: str | None = None
    body: str | None = None
    wa_id: str | None = None
    new_wa_id: str | None = None
    user_id: str | None = None
    parent_user_id: str | None = None


class Context(_Tolerant):
    from_: str | None = Field(default=None, alias="from")
    id: str | None = None
    forwarded: bool | None = None
    frequently_forwarded: bool | None = None
    referred_product: dict[str, Any] | None = None


class OriginalRef(_Tolerant):
    original_message_id: str
    message: dict[str, Any] | None = None


class Message(_Tolerant):
    id: str = Field(min_length=1)
    timestamp: str | int
    type: str
    from_: str | None = Field(default=None, alias="from")
    from_user_id: str | None = None
    from_parent_user_id: str | None = None
    context: Context | None = None
    text: Text | None = None
    image: MediaObject | None = None
    video: MediaObject | None = None
    audio: MediaObject | None = None
    document: MediaObject | None = None
    sticker: MediaObject | None = None
    location: LocationObject | None = None
    contacts: list[dict[str, Any]] | None = None
    interactive: Interactive | None = None
    button: Button | None = None
    reaction: Reaction | None = None
    order: dict[str, Any] | None = None
    system: System | None = None
    revoke: OriginalRef | None = None
    edit: OriginalRef | None = None
    referral: dict[str, Any] | None = None
    unsupported: dict[str, Any] | None = None
    errors: list[WebhookError] = Field(default_factory=list)


class Status(_Tolerant):
    id: str = Field(min_length=1)
    status: str
    timestamp: str | int
    recipient_id: str | None = None
    recipient_user_id: str | None = None
    recipient_type: str | None = None
    biz_opaque_callback_data: str | None = None
    conversation: dict[str, Any] | None = None
    pricing: dict[str, Any] | None = None
    errors: list[WebhookError] = Field(default_factory=list)


class MessagesValue(_Tolerant):
    """``value`` of a ``field = "messages"`` change: messages and statuses of one business number."""

    messaging_product: str | None = None
    metadata: Metadata
    contacts: list[Contact] = Field(default_factory=list)
    messages: list[Message] = Field(default_factory=list)
    statuses: list[Status] = Field(default_factory=list)
    errors: list[WebhookError] = Field(default_factory=list)


class Change(_Tolerant):
    field: str
    value: dict[str, Any]


class Entry(_Tolerant):
    id: str
    time: int | None = None
    changes: list[Change]


class WebhookPayload(_Tolerant):
    object: str
    entry: list[Entry]
