"""The WhatsApp Business Cloud API behind Parley's channel adapter interface.

Wiring (``AccountContext``): ``config`` holds ``phone_number_id`` (the primary
sender, also the account's ``external_id``), ``business_account_id`` and
optionally ``api_version``; ``secrets`` holds ``access_token``, ``app_secret``
and ``verify_token``; ``api_base_url`` is ``https://graph.facebook.com`` or a
simulator's URL.

Sending rules this adapter does *not* apply, because ``send`` can't know them:

* the 24-hour customer-service window: callers run
  :func:`parley.channels.whatsapp.window.check_can_send` first;
* throughput (80 msg/s per number), pair rate and the daily messaging limit:
  the delivery layer's flow control, sized from :attr:`WhatsAppAdapter.capabilities`.

Every send carries ``OutboundMessage.idempotency_key`` twice: as
``biz_opaque_callback_data`` (a real Cloud API field that Meta echoes in the
message's status webhooks) and as the ``X-Parley-Idempotency-Key`` header
(which Meta ignores and the simulator records). Meta does not deduplicate on
either, so a send retried after a timeout can still reach the customer twice;
the simulator's record flags such duplicates.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import re
from typing import TYPE_CHECKING, Any, ClassVar

import aiohttp
import httpx

from parley.channels.base import (
    AccountContext,
    Capabilities,
    ChannelAdapter,
    ChannelConfig,
    ChannelPermanentError,
    ChannelType,
    InboundEvent,
    MalformedPayloadError,
    Media,
    OutboundMessage,
    OutboundType,
    SendResult,
    SignatureError,
    TokenStore,
    WebhookAck,
    WebhookRequest,
)
from parley.channels.whatsapp.client import WhatsAppClient
from parley.channels.whatsapp.config import (
    CUSTOMER_SERVICE_WINDOW_HOURS,
    DEFAULT_API_VERSION,
    DEFAULT_THROUGHPUT_PER_S,
    MESSAGING_LIMIT_TIERS,
    WEBHOOK_ACK_DEADLINE_S,
    WhatsAppConfig,
)
from parley.channels.whatsapp.parse import parse_body

SIGNATURE_HEADER = "x-hub-signature-256"
SIGNATURE_PREFIX = "sha256="

# "CC." then up to 128 alphanumerics (PROTOCOLS.md 2.9); phone numbers are digits.
BSUID_PATTERN = re.compile(r"^[A-Z]{2}\.(ENT\.)?[A-Za-z0-9]{1,128}$")

MAX_TEXT = 4096
MAX_INTERACTIVE_BODY = 1024
MAX_BUTTONS = 3
MAX_BUTTON_TITLE = 20
MAX_LIST_ROWS = 10
MAX_ROW_TITLE = 24
MAX_ROW_DESCRIPTION = 72
MAX_CALLBACK_DATA = 512

_MEDIA_TYPES = {
    OutboundType.image: "image",
    OutboundType.video: "video",
    OutboundType.audio: "audio",
    OutboundType.voice: "audio",
    OutboundType.file: "document",
}


def sign(app_secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value Meta sends for a body."""
    return SIGNATURE_PREFIX + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def signature_matches(app_secret: str, body: bytes, header: str | None) -> bool:
    if not header or not header.startswith(SIGNATURE_PREFIX):
        return False
    return hmac.compare_digest(sign(app_secret, body).encode(), header.strip().encode())


def is_bsuid(user_id: str) -> bool:
    return BSUID_PATTERN.match(user_id) is not None


def build_message_payload(message: OutboundMessage) -> dict[str, Any]:
    """The JSON body of ``POST /{phone_number_id}/messages`` for a normalized message.

    Raises ChannelPermanentError for what WhatsApp can't carry (news, music) or
    a message that breaks the documented limits, so it fails here rather than
    as a 4xx after a network round trip.
    """
    payload: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual"}
    to = message.to.strip()
    if is_bsuid(to):
        payload["recipient"] = to
    else:
        payload["to"] = to.removeprefix("+")
    if message.reply_to and message.type is not OutboundType.reaction:
        payload["context"] = {"message_id": message.reply_to}
    if len(message.idempotency_key) > MAX_CALLBACK_DATA:
        raise ChannelPermanentError(f"idempotency key is longer than {MAX_CALLBACK_DATA} characters")
    payload["biz_opaque_callback_data"] = message.idempotency_key

    kind, body = _body(message)
    payload["type"] = kind
    payload[kind] = body
    return payload


def _body(message: OutboundMessage) -> tuple[str, dict[str, Any]]:
    kind = message.type
    if kind is OutboundType.text:
        text = message.text or ""
        if not text.strip():
            raise ChannelPermanentError("a WhatsApp text message needs a non-empty text")
        if len(text) > MAX_TEXT:
            raise ChannelPermanentError(f"WhatsApp text is limited to {MAX_TEXT} characters, got {len(text)}")
        # A preview only makes sense when there is a link to preview.
        return "text", {"preview_url": "http://" in text or "https://" in text, "body": text}
    if kind in _MEDIA_TYPES:
        media = _require_media(message)
        # Media.format "sticker" is how a sticker is asked for until OutboundType has one.
        wa_kind = "sticker" if media.format == "sticker" else _MEDIA_TYPES[kind]
        obj: dict[str, Any] = {"id": media.media_id} if media.media_id else {"link": media.url}
        caption = media.caption or message.text
        if caption and wa_kind in ("image", "video", "document"):
            obj["caption"] = caption
        if wa_kind == "document" and media.filename:
            obj["filename"] = media.filename
        return wa_kind, obj
    if kind is OutboundType.location:
        if message.location is None:
            raise ChannelPermanentError("a location message needs a location")
        loc: dict[str, Any] = {"latitude": message.location.latitude, "longitude": message.location.longitude}
        if message.location.name:
            loc["name"] = message.location.name
        if message.location.address:
            loc["address"] = message.location.address
        return "location", loc
    if kind is OutboundType.template:
        template = message.template
        if template is None:
            raise ChannelPermanentError("a template message needs a template")
        if not template.language:
            raise ChannelPermanentError(f"template {template.name!r} needs a language code, like en_US")
        body: dict[str, Any] = {"name": template.name, "language": {"code": template.language}}
        if template.components:
            body["components"] = template.components
        return "template", body
    if kind is OutboundType.interactive:
        if not message.interactive:
            raise ChannelPermanentError("an interactive message needs its interactive object")
        _check_interactive(message.interactive)
        return "interactive", dict(message.interactive)
    if kind is OutboundType.reaction:
        if not message.reply_to:
            raise ChannelPermanentError("a reaction needs reply_to: the wamid of the message reacted to")
        return "reaction", {"message_id": message.reply_to, "emoji": message.text or ""}
    raise ChannelPermanentError(f"WhatsApp can't send {kind.value} messages")


def _require_media(message: OutboundMessage) -> Media:
    media = message.media
    if media is None or not (media.media_id or media.url):
        raise ChannelPermanentError(f"a {message.type.value} message needs media.media_id or media.url")
    return media


def _check_interactive(interactive: dict[str, Any]) -> None:
    kind = interactive.get("type")
    if not isinstance(kind, str):
        raise ChannelPermanentError("interactive.type is required (button, list, cta_url, …)")
    body = interactive.get("body")
    body_text = body.get("text") if isinstance(body, dict) else None
    if isinstance(body_text, str) and len(body_text) > MAX_INTERACTIVE_BODY:
        raise ChannelPermanentError(f"interactive body is limited to {MAX_INTERACTIVE_BODY} characters")
    action = interactive.get("action")
    if not isinstance(action, dict):
        raise ChannelPermanentError("interactive.action is required")
    if kind == "button":
        buttons = action.get("buttons")
        if not isinstance(buttons, list) or not 1 <= len(buttons) <= MAX_BUTTONS:
            raise ChannelPermanentError(f"a button message needs 1 to {MAX_BUTTONS} buttons")
        for button in buttons:
            reply = button.get("reply") if isinstance(button, dict) else None
            title = reply.get("title") if isinstance(reply, dict) else None
            if not isinstance(title, str) or not 1 <= len(title) <= MAX_BUTTON_TITLE:
                raise ChannelPermanentError(f"reply button titles must be 1 to {MAX_BUTTON_TITLE} characters")
    elif kind == "list":
        sections = action.get("sections")
        if not isinstance(sections, list) or not sections:
            raise ChannelPermanentError("a list message needs sections")
        rows = [
            row for s in sections if isinstance(s, dict) for row in s.get("rows", []) if isinstance(row, dict)
        ]
        if not 1 <= len(rows) <= MAX_LIST_ROWS:
            raise ChannelPermanentError(f"a list message needs 1 to {MAX_LIST_ROWS} rows in total")
        for row in rows:
            if len(str(row.get("title", ""))) > MAX_ROW_TITLE:
                raise ChannelPermanentError(f"list row titles are limited to {MAX_ROW_TITLE} characters")
            if len(str(row.get("description", ""))) > MAX_ROW_DESCRIPTION:
                raise ChannelPermanentError(
                    f"list row descriptions are limited to {MAX_ROW_DESCRIPTION} characters"
                )


class WhatsAppAdapter:
    type: ClassVar[ChannelType] = ChannelType.whatsapp
    config_schema: ClassVar[builtins.type[ChannelConfig]] = WhatsAppConfig
    capabilities: ClassVar[Capabilities] = Capabilities(
        reply_window_hours=CUSTOMER_SERVICE_WINDOW_HOURS,
        template_only_outside_window=True,
        passive_reply=False,
        webhook_deadline_s=WEBHOOK_ACK_DEADLINE_S,
        default_rate_per_s=DEFAULT_THROUGHPUT_PER_S,
        # The lowest messaging-limit tier: unique users reached with templates
        # (outside a window) per moving 24 h, shared by all numbers of the portfolio.
        daily_quotas={"messaging_limit_unique_users": MESSAGING_LIMIT_TIERS[0] or 0},
    )

    def __init__(self, account: AccountContext, http: httpx.AsyncClient, tokens: TokenStore) -> None:
        self.account = account
        self._tokens = tokens  # unused: system-user tokens don't expire on a schedule
        config = account.config
        self.phone_number_id = str(config.get("phone_number_id") or account.external_id)
        self.business_account_id = str(config.get("business_account_id") or "")
        self.api_version = str(config.get("api_version") or DEFAULT_API_VERSION)
        self._app_secret = account.secrets.get("app_secret", "")
        self._verify_token = account.secrets.get("verify_token", "")
        self.client = WhatsAppClient(
            http,
            base_url=account.api_base_url,
            access_token=account.secrets.get("access_token", ""),
            api_version=self.api_version,
        )

    # --- webhook ---------------------------------------------------------------------------

    def handshake(self, request: WebhookRequest) -> WebhookAck:
        mode = request.query.get("hub.mode")
        token = request.query.get("hub.verify_token", "")
        challenge = request.query.get("hub.challenge")
        if mode != "subscribe" or not self._verify_token:
            raise SignatureError("webhook verification refused: hub.mode is not 'subscribe'", code=403)
        if not hmac.compare_digest(token.encode(), self._verify_token.encode()):
            raise SignatureError("webhook verification refused: hub.verify_token does not match", code=403)
        if not challenge:
            raise MalformedPayloadError("webhook verification without hub.challenge")
        return WebhookAck(body=challenge.encode(), media_type="text/plain", status_code=200)

    def verify(self, request: WebhookRequest) -> None:
        header = request.headers.get(SIGNATURE_HEADER)
        if not header:
            # code mirrors the HTTP status Meta's docs ask for: 401 missing, 403 mismatch.
            raise SignatureError("X-Hub-Signature-256 header is missing", code=401)
        if not self._app_secret:
            raise SignatureError("no app secret configured for this WhatsApp account", code=403)
        if not signature_matches(self._app_secret, request.body, header):
            raise SignatureError("X-Hub-Signature-256 does not match the body", code=403)

    def parse(self, request: WebhookRequest) -> list[InboundEvent]:
        return parse_body(request.body)

    def acknowledge(self, request: WebhookRequest, reply: OutboundMessage | None = None) -> WebhookAck:
        if reply is not None:
            raise ValueError("WhatsApp has no passive reply: send replies through send()")
        return WebhookAck(body=b"", status_code=200)

    # --- sending ---------------------------------------------------------------------------

    def use_session(self, session: aiohttp.ClientSession) -> None:
        """Sends through an aiohttp session from now on (the delivery engine's; see WhatsAppClient)."""
        self.client.use_session(session)

    async def send(self, message: OutboundMessage) -> SendResult:
        payload = build_message_payload(message)
        sender = message.sender_external_id or self.phone_number_id
        body = await self.client.send_message(sender, payload, idempotency_key=message.idempotency_key)
        return SendResult(platform_message_id=str(body["messages"][0]["id"]), raw=body)

    async def mark_read(
        self, message_id: str, *, sender_external_id: str | None = None, typing: bool = False
    ) -> bool:
        """Shows the customer blue ticks on their message (and a typing indicator if asked)."""
        return await self.client.mark_read(
            sender_external_id or self.phone_number_id, message_id, typing=typing
        )

    async def senders(self) -> list[dict[str, Any]]:
        """The WABA's phone numbers, to populate ``channel_senders``."""
        return await self.client.list_phone_numbers(self.business_account_id)

    async def templates(self) -> list[dict[str, Any]]:
        return await self.client.list_templates(self.business_account_id)


if TYPE_CHECKING:
    _conforms: builtins.type[ChannelAdapter] = WhatsAppAdapter
