"""The one adapter interface every platform sits behind, and the normalized types it speaks.

Business logic never talks to a platform: it reads :class:`InboundEvent` rows
and writes outbound messages; adapters translate both ways (DESIGN.md).
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Protocol

import httpx
from pydantic import BaseModel, ConfigDict, Field


class ChannelType(StrEnum):
    wechat = "wechat"
    whatsapp = "whatsapp"
    webchat = "webchat"
    email = "email"


class InboundKind(StrEnum):
    message = "message"  # the customer said something
    event = "event"  # follow, unfollow, scan, menu click, location report, job finished…
    status = "status"  # what happened to a message we sent: sent, delivered, read, failed


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Sender(_Model):
    """Who sent it, as the platform identifies them.

    ``id`` is the per-account id (WeChat OpenID; WhatsApp ``wa_id``, or the
    business-scoped user id once a user has a username and no number: see
    PROTOCOLS.md 2.9). Keeping ``phone``, ``bsuid`` and ``username`` beside it
    means the 2026 identity change needs no migration.
    """

    id: str
    unionid: str | None = None
    phone: str | None = None
    bsuid: str | None = None
    username: str | None = None
    display_name: str | None = None


class Media(_Model):
    media_id: str | None = None
    url: str | None = None
    mime_type: str | None = None
    sha256: str | None = None
    caption: str | None = None
    filename: str | None = None
    format: str | None = None  # WeChat voice Format (amr, speex)
    thumb_media_id: str | None = None


class Location(_Model):
    latitude: float
    longitude: float
    precision: float | None = None  # WeChat Scale / Precision
    name: str | None = None
    address: str | None = None


class Link(_Model):
    title: str | None = None
    description: str | None = None
    url: str


class StatusUpdate(_Model):
    message_id: str  # the platform's id of the message we sent
    status: str  # sent | delivered | read | failed
    recipient_id: str | None = None
    error_code: int | None = None
    error_title: str | None = None
    error_detail: str | None = None


class InboundEvent(_Model):
    """One normalized thing a platform told us. A webhook body may carry several."""

    kind: InboundKind
    # message: text, image, voice, video, shortvideo, location, link, file, sticker, contacts,
    #          interactive, button, reaction, unsupported
    # event:   subscribe, unsubscribe, scan, location_report, menu_click, menu_view, scancode,
    #          template_send_finished, mass_send_finished, kf_session_create, kf_session_close,
    #          kf_session_switch, and others by platform
    # status:  sent, delivered, read, failed
    type: str
    dedupe_key: str
    platform_message_id: str | None = None
    account_external_id: str  # ToUserName / phone_number_id: which of our accounts it was for
    sender: Sender
    occurred_at: datetime
    text: str | None = None
    recognition: str | None = None  # speech-to-text of a voice message
    media: Media | None = None
    location: Location | None = None
    link: Link | None = None
    status: StatusUpdate | None = None
    reply_to: str | None = None  # the platform id of the message this one answers or reacts to
    data: dict[str, Any] = Field(default_factory=dict)  # event key, QR scene and ticket, button payload…


class OutboundType(StrEnum):
    text = "text"
    image = "image"
    voice = "voice"
    audio = "audio"
    video = "video"
    file = "file"
    music = "music"
    news = "news"
    location = "location"
    template = "template"
    interactive = "interactive"
    reaction = "reaction"


class Article(_Model):
    title: str
    description: str = ""
    url: str = ""
    picurl: str = ""


class Template(_Model):
    """A pre-approved message. WeChat: ``template_id`` + ``data``; WhatsApp: ``name`` + ``language`` + ``components``."""

    name: str
    language: str | None = None
    components: list[dict[str, Any]] = Field(default_factory=list)
    data: dict[str, Any] = Field(default_factory=dict)
    url: str | None = None


class OutboundMessage(_Model):
    to: str  # the recipient's per-account id (OpenID, wa_id / BSUID)
    type: OutboundType
    text: str | None = None
    media: Media | None = None
    title: str | None = None
    description: str | None = None
    music_url: str | None = None
    hq_music_url: str | None = None
    articles: list[Article] = Field(default_factory=list)
    location: Location | None = None
    template: Template | None = None
    interactive: dict[str, Any] | None = None
    reply_to: str | None = None
    sender_external_id: str | None = None  # which of the account's numbers sends it (WhatsApp)
    # Stable per message: a retried send carries the same key, so the platform
    # side (and our simulator's record) can tell a retry from a new message.
    idempotency_key: str


class SendResult(_Model):
    platform_message_id: str | None = None
    raw: dict[str, Any] = Field(default_factory=dict)


# --- errors -----------------------------------------------------------------------------------


class ChannelError(Exception):
    def __init__(self, message: str, *, code: int | None = None, raw: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.raw = raw


class SignatureError(ChannelError):
    """The request did not come from the platform (HTTP 403)."""


class MalformedPayloadError(ChannelError):
    """Broken, hostile or wrongly-typed body (HTTP 400)."""


class UnsupportedEventTypeError(ChannelError):
    """A well-formed payload of a kind this adapter does not handle."""


class ChannelRetriableError(ChannelError):
    """Try the same send again later (network, 5xx, system busy, rate limit)."""

    def __init__(
        self, message: str, *, retry_after_s: float | None = None, code: int | None = None, raw: Any = None
    ):
        super().__init__(message, code=code, raw=raw)
        self.retry_after_s = retry_after_s


class ChannelQuotaExceededError(ChannelError):
    """A daily quota is used up; the send waits for ``reset_at``, it has not failed."""

    def __init__(
        self, message: str, *, reset_at: datetime | None = None, code: int | None = None, raw: Any = None
    ):
        super().__init__(message, code=code, raw=raw)
        self.reset_at = reset_at


class ChannelWindowClosedError(ChannelError):
    """The customer-service window is closed: only a template may be sent now."""


class ChannelPermanentError(ChannelError):
    """Will never succeed as it is (unknown user, blocked, template rejected, bad request)."""


# --- the adapter interface ------------------------------------------------------------------


class ChannelConfig(BaseModel):
    """Validated settings of one account; secret fields are ``SecretStr``."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Capabilities:
    reply_window_hours: int | None  # free-form replies allowed this long after the customer's last message
    template_only_outside_window: bool
    passive_reply: bool  # the webhook response itself may carry the reply (WeChat)
    webhook_deadline_s: float  # how long the platform waits for our answer before retrying
    default_rate_per_s: float
    daily_quotas: Mapping[str, int] = field(default_factory=dict)  # API name → calls a day


@dataclass(frozen=True)
class WebhookRequest:
    method: str
    query: Mapping[str, str]
    headers: Mapping[str, str]  # lower-cased names
    body: bytes
    # What an adapter worked out from this very request (parsed body, decrypted fields), so that
    # ``verify``, ``parse`` and ``acknowledge`` on one request parse and decrypt once. Keys are the
    # adapter's own; an entry that depends on the account's credentials must record which.
    memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class WebhookAck:
    """What the webhook answers the platform."""

    body: bytes
    media_type: str = "text/plain"
    status_code: int = 200


@dataclass(frozen=True)
class AccountContext:
    """What an adapter instance knows of its account (credentials already decrypted)."""

    account_id: str
    external_id: str
    api_base_url: str
    config: Mapping[str, Any]
    secrets: Mapping[str, str]


class TokenStore(Protocol):
    """Where access tokens live so that every process shares one (see :class:`parley.models.PlatformToken`)."""

    async def get(self, account_id: str, kind: str) -> tuple[str, datetime] | None: ...

    async def put(self, account_id: str, kind: str, value: str, expires_at: datetime) -> None: ...


class ChannelAdapter(Protocol):
    type: ClassVar[ChannelType]
    # builtins.type: the attribute above shadows the builtin inside this class body.
    config_schema: ClassVar[builtins.type[ChannelConfig]]
    capabilities: ClassVar[Capabilities]

    def __init__(self, account: AccountContext, http: httpx.AsyncClient, tokens: TokenStore) -> None: ...

    def handshake(self, request: WebhookRequest) -> WebhookAck:
        """Answers the platform's URL verification (GET); raises SignatureError if it is not genuine."""
        ...

    def verify(self, request: WebhookRequest) -> None:
        """Raises SignatureError unless the POST is signed by the platform with this account's secret."""
        ...

    def parse(self, request: WebhookRequest) -> list[InboundEvent]:
        """Decrypts if needed and normalizes; raises MalformedPayloadError on bad input."""
        ...

    def acknowledge(self, request: WebhookRequest, reply: OutboundMessage | None = None) -> WebhookAck:
        """The webhook's answer: empty success, or a passive reply (encrypted in safe mode) where allowed."""
        ...

    async def send(self, message: OutboundMessage) -> SendResult:
        """Sends through the platform API; raises one of the four outcome errors on failure."""
        ...
