"""The simulated WhatsApp Cloud platform: accounts, users, the Graph send rules and the webhook sender.

Everything lives in memory in one :class:`Platform`. Faithfulness choices
(PROTOCOLS.md Part 2) and where the simulator simplifies:

* Webhook bodies are serialised with escaped unicode (``\\uXXXX``) as Meta
  sends them, and signed over exactly those bytes.
* Delivery is retried on any non-200 answer or timeout, with the same body (so
  the same wamid) each time. Meta keeps trying for up to 7 days with
  decreasing frequency; the simulator's schedule is ``webhook_retry_delays_s``
  (short by default, settable through the limits endpoint).
* The 24 h customer-service window opens when the simulated user sends a
  message, whether or not Parley's webhook accepted it (as on WhatsApp).
  Time is the simulator's clock, which tests can move forward.
* The messaging limit counts unique users reached with a template while their
  window is closed, over a moving 24 h, per account; exceeding it answers
  131048, since Meta documents no dedicated code for it.
* The ``sent`` status is always emitted after a send is accepted; with
  ``status_mode = "auto"`` ``delivered`` and ``read`` follow.
* An unknown recipient answers 131026 synchronously by default
  (``undeliverable = "sync"``); ``"status"`` accepts the send and reports a
  ``failed`` status instead, which is what Meta does for some numbers.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import re
import secrets
import time
from collections import Counter, deque
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from parley.sandbox.whatsapp.media import placeholder

DEFAULT_API_VERSION = "v25.0"
WINDOW_S = 24 * 3600
MEDIA_URL_TTL_S = 300
MAX_RECORD = 50_000
MAX_DELIVERIES = 2_000

BSUID_RE = re.compile(r"^[A-Z]{2}\.(ENT\.)?[A-Za-z0-9]{1,128}$")
PLACEHOLDER_RE = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")

# Graph error titles, as Meta phrases them, and the HTTP status they come with.
ERRORS: dict[int, tuple[str, int]] = {
    2: ("Service temporarily unavailable", 503),
    4: ("Application request limit reached", 429),
    100: ("Invalid parameter", 400),
    190: ("Invalid OAuth access token - Cannot parse access token", 401),
    80007: ("Rate limit issues", 429),
    130429: ("Rate limit hit", 429),
    131000: ("Something went wrong", 500),
    131008: ("Required parameter is missing", 400),
    131009: ("Parameter value is not valid", 400),
    131016: ("Service unavailable", 503),
    131026: ("Message undeliverable", 400),
    131047: ("Re-engagement message", 400),
    131048: ("Spam rate limit hit", 400),
    131049: ("This message was not delivered to maintain healthy ecosystem engagement.", 400),
    131051: ("Unsupported message type", 400),
    131053: ("Media upload error", 400),
    131056: ("(Business Account, Consumer Account) pair rate limit hit", 429),
    132000: ("Number of parameters does not match the expected number of params", 400),
    132001: ("Template name does not exist in the translation", 400),
    132015: ("Template is Paused", 400),
    132016: ("Template is Disabled", 400),
}
TRANSIENT = {2, 131000, 131016}

SEND_TYPES = {
    "text",
    "image",
    "video",
    "audio",
    "document",
    "sticker",
    "location",
    "contacts",
    "interactive",
    "template",
    "reaction",
}
MEDIA_TYPES = {"image", "video", "audio", "document", "sticker"}


class GraphError(Exception):
    """A Graph API error answer: ``{"error": {...}}`` with the matching HTTP status."""

    def __init__(
        self,
        code: int,
        details: str = "",
        *,
        http_status: int | None = None,
        subcode: int | None = None,
        message: str | None = None,
    ) -> None:
        title, default_status = ERRORS.get(code, ("Error", 400))
        super().__init__(f"(#{code}) {message or title}")
        self.code = code
        self.title = title
        self.details = details
        self.http_status = http_status or default_status
        self.subcode = subcode
        self.message = message or title

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "message": f"(#{self.code}) {self.message}",
            "type": "OAuthException",
            "code": self.code,
            "error_data": {"messaging_product": "whatsapp", "details": self.details or self.title},
            "fbtrace_id": "A" + secrets.token_urlsafe(16)[:22],
        }
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        if self.code in TRANSIENT:
            error["is_transient"] = True
        return {"error": error}


# --- state -------------------------------------------------------------------------------------


@dataclass
class PhoneNumber:
    phone_number_id: str
    display_phone_number: str
    verified_name: str

    def public(self) -> dict[str, Any]:
        return {
            "id": self.phone_number_id,
            "display_phone_number": self.display_phone_number,
            "verified_name": self.verified_name,
            "quality_rating": "GREEN",
            "code_verification_status": "VERIFIED",
            "throughput": {"level": "STANDARD"},
        }


@dataclass
class SimUser:
    name: str
    wa_id: str
    bsuid: str | None = None
    username: str | None = None
    # A user with a username may hide their number: webhooks then omit wa_id/from (2.9).
    hide_phone: bool = False
    last_inbound_at: dict[str, float] = field(default_factory=dict)  # phone_number_id → sim time
    last_received_at: dict[str, float] = field(default_factory=dict)  # pair-rate bookkeeping

    @property
    def key(self) -> str:
        return self.bsuid or self.wa_id

    def public(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "wa_id": self.wa_id,
            "bsuid": self.bsuid,
            "username": self.username,
            "hide_phone": self.hide_phone,
            "last_inbound_at": dict(self.last_inbound_at),
        }


@dataclass
class Fault:
    count: int
    code: int | None = None
    http_status: int | None = None
    delay_s: float = 0.0
    message: str | None = None


@dataclass
class Limits:
    rate_per_s: float = 80.0
    pair_interval_s: float = 0.0  # 0 = pair rate not enforced; Meta's is about 6 s
    messaging_limit: int | None = 250
    status_mode: Literal["auto", "manual"] = "auto"
    auto_read: bool = True
    status_delay_s: float = 0.05
    webhook_retry_delays_s: list[float] = field(default_factory=lambda: [1.0, 2.0, 4.0, 8.0, 16.0, 32.0])
    webhook_timeout_s: float = 5.0
    undeliverable: Literal["sync", "status"] = "sync"
    # False plays an app not subscribed to the WABA's webhooks: statuses still change (the record and
    # the phone page show them) but nothing is POSTed. Benchmarks use it so that the platform's own
    # webhook traffic does not compete with Parley for this machine's cores.
    webhooks_subscribed: bool = True
    faults: list[Fault] = field(default_factory=list)

    def public(self) -> dict[str, Any]:
        return {
            "rate_per_s": self.rate_per_s,
            "pair_interval_s": self.pair_interval_s,
            "messaging_limit": self.messaging_limit,
            "status_mode": self.status_mode,
            "auto_read": self.auto_read,
            "status_delay_s": self.status_delay_s,
            "webhook_retry_delays_s": list(self.webhook_retry_delays_s),
            "webhook_timeout_s": self.webhook_timeout_s,
            "undeliverable": self.undeliverable,
            "webhooks_subscribed": self.webhooks_subscribed,
            "faults": [dict(vars(f)) for f in self.faults],
        }


@dataclass
class Account:
    waba_id: str
    phone_numbers: dict[str, PhoneNumber]
    access_token: str
    app_secret: str
    verify_token: str
    webhook_url: str
    api_version: str = DEFAULT_API_VERSION
    users: dict[str, SimUser] = field(default_factory=dict)  # by wa_id
    templates: list[dict[str, Any]] = field(default_factory=list)
    limits: Limits = field(default_factory=Limits)
    template_reach: dict[str, float] = field(default_factory=dict)  # user key → last sim time reached

    def find_user(self, key: str) -> SimUser | None:
        key = key.strip().removeprefix("+")
        if key in self.users:
            return self.users[key]
        return next((u for u in self.users.values() if u.bsuid == key), None)

    def template(self, name: str, language: str) -> dict[str, Any] | None:
        return next((t for t in self.templates if t["name"] == name and t["language"] == language), None)

    def public(self) -> dict[str, Any]:
        return {
            "business_account_id": self.waba_id,
            "phone_numbers": [p.public() for p in self.phone_numbers.values()],
            "webhook_url": self.webhook_url,
            "api_version": self.api_version,
            "users": [u.public() for u in self.users.values()],
            "limits": self.limits.public(),
        }


@dataclass
class StoredMedia:
    media_id: str
    content: bytes
    mime_type: str
    filename: str
    owner: str  # phone_number_id that uploaded it, or "user:<wa_id>"

    @property
    def sha256_hex(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @property
    def sha256_b64(self) -> str:
        return base64.b64encode(hashlib.sha256(self.content).digest()).decode()


@dataclass
class Delivery:
    id: int
    kind: str
    waba_id: str
    url: str
    body: bytes
    attempts: list[dict[str, Any]] = field(default_factory=list)
    delivered: bool = False
    done: bool = False

    def public(self, *, with_body: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "url": self.url,
            "delivered": self.delivered,
            "done": self.done,
            "attempts": list(self.attempts),
        }
        if with_body:
            out["body"] = json.loads(self.body)
        return out


# --- platform ----------------------------------------------------------------------------------


def _digits(n: int) -> str:
    return str(secrets.randbelow(9 * 10 ** (n - 1)) + 10 ** (n - 1))


class Platform:
    """All simulator state and behaviour; the FastAPI app is a thin layer over it."""

    def __init__(self, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._transport = transport
        self._http: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._clear()

    def _clear(self) -> None:
        self.accounts: dict[str, Account] = {}
        self.media: dict[str, StoredMedia] = {}
        self.media_urls: dict[str, tuple[str, float]] = {}  # token → media id, expiry (real time)
        self.record: list[dict[str, Any]] = []
        self.seen_keys: set[str] = set()
        self.accepted_by_key: dict[str, dict[str, Any]] = {}
        self.messages: dict[str, dict[str, Any]] = {}  # wamid → record entry (outbound)
        self.shown: dict[str, dict[str, Any]] = {}  # wamid → its item on the phone page (outbound)
        self.conversations: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        self.deliveries: deque[Delivery] = deque(maxlen=MAX_DELIVERIES)
        self.clock_offset_s = 0.0
        self.stats: Counter[str] = Counter()
        self.errors_by_code: Counter[int] = Counter()
        self.per_second: Counter[int] = Counter()
        self._rate: dict[str, tuple[float, float]] = {}  # phone number id → (tokens, monotonic time)
        self._delivery_ids = 0

    # --- plumbing ---------------------------------------------------------------------------

    def now(self) -> float:
        return time.time() + self.clock_offset_s

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @property
    def background_tasks(self) -> int:
        return len(self._tasks)

    async def idle(self, timeout_s: float = 10.0) -> bool:
        """Waits until no background delivery is running; True if it got there in time."""
        deadline = time.monotonic() + timeout_s
        while self._tasks:
            if time.monotonic() > deadline:
                return False
            await asyncio.wait(list(self._tasks), timeout=max(0.0, deadline - time.monotonic()))
        return True

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def reset(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self._clear()

    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(transport=self._transport, follow_redirects=False)
        return self._http

    def account(self, waba_id: str) -> Account:
        account = self.accounts.get(waba_id)
        if account is None:
            raise KeyError(f"no account {waba_id}")
        return account

    def account_by_token(self, token: str) -> Account | None:
        for account in self.accounts.values():
            if hmac.compare_digest(account.access_token.encode(), token.encode()):
                return account
        return None

    def account_of_number(self, phone_number_id: str) -> Account | None:
        return next((a for a in self.accounts.values() if phone_number_id in a.phone_numbers), None)

    def conversation(self, phone_number_id: str, user: SimUser) -> list[dict[str, Any]]:
        account = self.account_of_number(phone_number_id)
        waba = account.waba_id if account else ""
        return self.conversations.setdefault((waba, phone_number_id, user.wa_id), [])

    def window_open(self, user: SimUser, phone_number_id: str) -> bool:
        last = user.last_inbound_at.get(phone_number_id)
        return last is not None and self.now() - last < WINDOW_S

    # --- media ------------------------------------------------------------------------------

    def store_media(self, content: bytes, mime_type: str, filename: str, owner: str) -> StoredMedia:
        media_id = _digits(16)
        stored = StoredMedia(
            media_id=media_id, content=content, mime_type=mime_type, filename=filename, owner=owner
        )
        self.media[media_id] = stored
        return stored

    def media_url(self, base_url: str, media_id: str) -> str:
        token = secrets.token_urlsafe(24)
        self.media_urls[token] = (media_id, time.time() + MEDIA_URL_TTL_S)
        return f"{base_url.rstrip('/')}/whatsapp_business/attachments/?mid={media_id}&ext={int(time.time())}&hash={token}"

    def media_for_url(self, token: str) -> StoredMedia | None:
        entry = self.media_urls.get(token)
        if entry is None or entry[1] < time.time():
            return None
        return self.media.get(entry[0])

    # --- webhooks ---------------------------------------------------------------------------

    @staticmethod
    def encode(payload: dict[str, Any]) -> bytes:
        # Meta signs the escaped-unicode form it actually sends (2.2).
        return json.dumps(payload, ensure_ascii=True, separators=(",", ":")).encode()

    @staticmethod
    def sign(app_secret: str, body: bytes) -> str:
        return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()

    def new_delivery(self, account: Account, kind: str, body: bytes) -> Delivery:
        self._delivery_ids += 1
        delivery = Delivery(
            id=self._delivery_ids, kind=kind, waba_id=account.waba_id, url=account.webhook_url, body=body
        )
        self.deliveries.append(delivery)
        return delivery

    async def deliver(
        self,
        account: Account,
        delivery: Delivery,
        *,
        signature: Literal["valid", "invalid", "missing"] = "valid",
    ) -> Delivery:
        """POSTs one webhook body, retrying per the account's schedule until Parley answers 200."""
        headers = {"Content-Type": "application/json", "User-Agent": "facebookexternalua"}
        if signature == "valid":
            headers["X-Hub-Signature-256"] = self.sign(account.app_secret, delivery.body)
        elif signature == "invalid":
            headers["X-Hub-Signature-256"] = self.sign("not-the-app-secret", delivery.body)
        delays = [0.0, *account.limits.webhook_retry_delays_s]
        for attempt, delay in enumerate(delays, start=1):
            if delay > 0:
                await asyncio.sleep(delay)
            outcome: dict[str, Any] = {"attempt": attempt, "at": self.now()}
            try:
                response = await self.http().post(
                    delivery.url,
                    content=delivery.body,
                    headers=headers,
                    timeout=account.limits.webhook_timeout_s,
                )
                outcome["status_code"] = response.status_code
                outcome["body"] = response.text[:500]
            except httpx.HTTPError as exc:
                outcome["error"] = f"{type(exc).__name__}: {exc}"
            delivery.attempts.append(outcome)
            self.stats["webhook_attempts"] += 1
            if outcome.get("status_code") == 200:
                delivery.delivered = True
                self.stats["webhooks_delivered"] += 1
                break
        else:
            self.stats["webhooks_failed"] += 1
        delivery.done = True
        return delivery

    def envelope(self, account: Account, changes: list[dict[str, Any]]) -> dict[str, Any]:
        return {"object": "whatsapp_business_account", "entry": [{"id": account.waba_id, "changes": changes}]}

    @staticmethod
    def metadata(number: PhoneNumber) -> dict[str, str]:
        return {
            "display_phone_number": number.display_phone_number,
            "phone_number_id": number.phone_number_id,
        }

    @staticmethod
    def contact_of(user: SimUser) -> dict[str, Any]:
        profile: dict[str, Any] = {"name": user.name}
        if user.username:
            profile["username"] = user.username
        contact: dict[str, Any] = {"profile": profile}
        if not user.hide_phone:
            contact["wa_id"] = user.wa_id
        if user.bsuid:
            contact["user_id"] = user.bsuid
        return contact

    def messages_change(
        self,
        number: PhoneNumber,
        *,
        messages: Sequence[tuple[SimUser, dict[str, Any]]] = (),
        statuses: Sequence[dict[str, Any]] = (),
    ) -> dict[str, Any]:
        value: dict[str, Any] = {"messaging_product": "whatsapp", "metadata": self.metadata(number)}
        if messages:
            contacts: list[dict[str, Any]] = []
            for user, _ in messages:
                contact = self.contact_of(user)
                if contact not in contacts:
                    contacts.append(contact)
            value["contacts"] = contacts
            value["messages"] = [m for _, m in messages]
        if statuses:
            value["statuses"] = list(statuses)
        return {"value": value, "field": "messages"}

    # --- inbound (user → Parley) --------------------------------------------------------------

    def number_for(self, account: Account, phone_number_id: str | None) -> PhoneNumber:
        if phone_number_id is None:
            return next(iter(account.phone_numbers.values()))
        number = account.phone_numbers.get(phone_number_id)
        if number is None:
            raise KeyError(f"account {account.waba_id} has no phone number {phone_number_id}")
        return number

    def new_wamid(self, user: SimUser) -> str:
        raw = (
            b"\x18\x0b"
            + user.wa_id.encode()
            + b"\x15\x02\x00\x12\x18\x14"
            + secrets.token_hex(10).upper().encode()
        )
        return "wamid." + base64.urlsafe_b64encode(raw).decode()

    def user_message(
        self, account: Account, user: SimUser, number: PhoneNumber, action: dict[str, Any], base_url: str
    ) -> dict[str, Any]:
        """Builds the webhook ``messages[]`` item for what a user does, and logs it in the chat."""
        kind = str(action.get("type", "text"))
        wamid = self.new_wamid(user)
        message: dict[str, Any] = {}
        if not user.hide_phone:
            message["from"] = user.wa_id
        if user.bsuid:
            message["from_user_id"] = user.bsuid
        message |= {"id": wamid, "timestamp": str(int(self.now())), "type": kind}
        shown: dict[str, Any] = {"type": kind}
        context_id = action.get("context_message_id")
        if kind == "text":
            body = str(action.get("text", ""))
            message["text"] = {"body": body}
            shown["text"] = body
        elif kind in ("image", "video", "audio", "voice", "document", "sticker"):
            wa_kind = "audio" if kind == "voice" else kind
            message["type"] = wa_kind
            stored = self._user_media(user, wa_kind, action)
            obj: dict[str, Any] = {
                "mime_type": stored.mime_type,
                "sha256": stored.sha256_b64,
                "id": stored.media_id,
            }
            if action.get("caption") and wa_kind in ("image", "video", "document"):
                obj["caption"] = str(action["caption"])
            if wa_kind == "document":
                obj["filename"] = stored.filename
            if wa_kind == "audio":
                obj["voice"] = kind == "voice"
            if wa_kind == "sticker":
                obj["animated"] = False
            obj["url"] = self.media_url(base_url, stored.media_id)
            message[wa_kind] = obj
            shown |= {"type": wa_kind, "media_id": stored.media_id, "caption": obj.get("caption")}
        elif kind == "location":
            loc: dict[str, Any] = {
                "latitude": float(action["latitude"]),
                "longitude": float(action["longitude"]),
            }
            for key in ("name", "address", "url"):
                if action.get(key):
                    loc[key] = str(action[key])
            message["location"] = loc
            shown["location"] = loc
        elif kind == "contacts":
            message["contacts"] = action.get("contacts") or [
                {
                    "name": {"formatted_name": "Ada Lovelace", "first_name": "Ada"},
                    "phones": [{"phone": "+44 20 7946 0000", "type": "CELL"}],
                }
            ]
            shown["text"] = ", ".join(
                c.get("name", {}).get("formatted_name", "?") for c in message["contacts"]
            )
        elif kind == "reaction":
            target = str(action.get("message_id") or context_id or "")
            reaction: dict[str, Any] = {"message_id": target}
            if action.get("emoji"):
                reaction["emoji"] = str(action["emoji"])
            else:
                reaction["emoji"] = ""
            message["reaction"] = reaction
            shown |= {"emoji": reaction["emoji"], "reply_to": target}
            context_id = None  # a reaction names its target in the reaction object, not in context
        elif kind == "button":
            payload = str(action.get("payload", ""))
            text = str(action.get("text") or payload)
            message["button"] = {"payload": payload, "text": text}
            shown["text"] = text
        elif kind == "interactive":
            reply_kind = str(action.get("reply_type") or "button_reply")
            reply_id = str(action.get("reply_id", ""))
            title = str(action.get("title") or self._reply_title(context_id, reply_id) or reply_id)
            reply: dict[str, Any] = {"id": reply_id, "title": title}
            if action.get("description"):
                reply["description"] = str(action["description"])
            message["interactive"] = {"type": reply_kind, reply_kind: reply}
            shown["text"] = title
        elif kind == "order":
            message["order"] = action.get("order") or {"catalog_id": "1", "text": "", "product_items": []}
            shown["text"] = "🛒 order"
        else:
            message["type"] = "unsupported"
            message["errors"] = [
                {
                    "code": 131051,
                    "title": "Message type unknown",
                    "message": "Message type unknown",
                    "error_data": {"details": "Message type is currently not supported."},
                }
            ]
            shown = {"type": "unsupported", "text": f"({kind})"}
        if context_id:
            message["context"] = {"from": number.display_phone_number, "id": str(context_id)}
            shown["reply_to"] = str(context_id)

        now = self.now()
        user.last_inbound_at[number.phone_number_id] = now
        self.conversation(number.phone_number_id, user).append(
            shown | {"id": wamid, "direction": "in", "timestamp": now, "status": "sent"}
        )
        self.stats["user_messages"] += 1
        return message

    def _user_media(self, user: SimUser, kind: str, action: dict[str, Any]) -> StoredMedia:
        if action.get("media_id") and str(action["media_id"]) in self.media:
            return self.media[str(action["media_id"])]
        if action.get("data_base64"):
            content = base64.b64decode(str(action["data_base64"]), validate=False)
            mime = str(action.get("mime_type") or "application/octet-stream")
            name = str(action.get("filename") or f"upload.{mime.split('/')[-1]}")
            return self.store_media(content, mime, name, f"user:{user.wa_id}")
        content, mime, name = placeholder(kind)
        if action.get("filename"):
            name = str(action["filename"])
        return self.store_media(content, mime, name, f"user:{user.wa_id}")

    def _reply_title(self, context_id: Any, reply_id: str) -> str | None:
        sent = self.messages.get(str(context_id)) if context_id else None
        if sent is None:
            return None
        interactive = sent.get("content") if sent.get("type") == "interactive" else None
        if not isinstance(interactive, dict):
            return None
        action = interactive.get("action", {})
        for button in action.get("buttons", []):
            reply = button.get("reply", {})
            if reply.get("id") == reply_id:
                return str(reply.get("title"))
        for section in action.get("sections", []):
            for row in section.get("rows", []):
                if row.get("id") == reply_id:
                    return str(row.get("title"))
        return None

    # --- outbound (Parley → user) ------------------------------------------------------------

    def take_fault(self, account: Account) -> Fault | None:
        for fault in account.limits.faults:
            if fault.count > 0:
                fault.count -= 1
                return fault
        return None

    def _check_rate(self, account: Account, phone_number_id: str) -> None:
        """Meta's per-number throughput, as a bucket holding one second's worth of sends.

        Meta states the limit in messages per second and documents no window. A trailing 1-second
        window counted here, at the moment this process handles each request, would refuse sends
        that arrived evenly but were handled in a bunch after a pause of the simulator's own event
        loop (or of this shared machine): an artifact of the simulator, not the sender's rate. The
        bucket refills at the rate, so the sustained rate is still capped at the limit.
        """
        rate = account.limits.rate_per_s
        now = time.monotonic()
        tokens, last = self._rate.get(phone_number_id, (rate, now))
        tokens = min(rate, tokens + (now - last) * rate)
        if tokens < 1.0:
            self._rate[phone_number_id] = (tokens, now)
            raise GraphError(
                130429,
                f"Message failed to send because there were too many messages sent from this phone number "
                f"({rate:g}/s).",
            )
        self._rate[phone_number_id] = (tokens - 1.0, now)

    def _check_template(self, account: Account, body: dict[str, Any]) -> dict[str, Any]:
        template = body.get("template")
        if not isinstance(template, dict) or not isinstance(template.get("name"), str):
            raise GraphError(131008, "Parameter template.name is required.")
        language = template.get("language")
        code = language.get("code") if isinstance(language, dict) else None
        if not isinstance(code, str):
            raise GraphError(131008, "Parameter template.language.code is required.")
        stored = account.template(template["name"], code)
        if stored is None or stored.get("status") in ("PENDING", "REJECTED"):
            raise GraphError(132001, f"template name ({template['name']}) does not exist in {code}")
        if stored.get("status") == "PAUSED":
            raise GraphError(132015, f"template {template['name']} is paused")
        if stored.get("status") == "DISABLED":
            raise GraphError(132016, f"template {template['name']} is disabled")
        expected = _placeholders(stored, "BODY")
        components = template.get("components") or []
        given = sum(
            len(c.get("parameters") or [])
            for c in components
            if isinstance(c, dict) and str(c.get("type", "")).lower() == "body"
        )
        if expected != given:
            raise GraphError(
                132000,
                f"body: number of localizable_params ({given}) does not match the expected number of params ({expected})",
            )
        return stored

    def _check_content(self, kind: str, obj: Any) -> None:
        if not isinstance(obj, dict):
            raise GraphError(131008, f"The parameter {kind} is required.")
        if kind == "text":
            text = obj.get("body")
            if not isinstance(text, str) or not text:
                raise GraphError(131008, "The parameter text['body'] is required.")
            if len(text) > 4096:
                raise GraphError(100, "Param text['body'] must be at most 4096 characters long.")
        elif kind in MEDIA_TYPES:
            media_id = obj.get("id")
            if media_id is None and not obj.get("link"):
                raise GraphError(131008, f"Either {kind}['id'] or {kind}['link'] is required.")
            if media_id is not None and str(media_id) not in self.media:
                raise GraphError(
                    100, f"Param {kind}['id'] is not a valid whatsapp business account media attachment ID"
                )
        elif kind == "interactive":
            action = obj.get("action")
            if not isinstance(obj.get("type"), str) or not isinstance(action, dict):
                raise GraphError(131008, "interactive['type'] and interactive['action'] are required.")
            if obj["type"] == "button":
                buttons = action.get("buttons")
                if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
                    raise GraphError(
                        131009, "Param interactive['action']['buttons'] must have between 1 and 3 elements."
                    )
                for button in buttons:
                    title = (button.get("reply") or {}).get("title") if isinstance(button, dict) else None
                    if not isinstance(title, str) or not 1 <= len(title) <= 20:
                        raise GraphError(131009, "Button title length invalid. Min length: 1, Max length: 20")
        elif kind == "location":
            if not isinstance(obj.get("latitude"), int | float) or not isinstance(
                obj.get("longitude"), int | float
            ):
                raise GraphError(131009, "location latitude and longitude must be numbers.")
        elif kind == "reaction" and not isinstance(obj.get("message_id"), str):
            raise GraphError(131008, "The parameter reaction['message_id'] is required.")

    def send(
        self, account: Account, number: PhoneNumber, body: dict[str, Any], idempotency_header: str | None
    ) -> dict[str, Any]:
        """Applies the Cloud API's send rules in the order Meta does; returns the Graph answer.

        A send carrying an ``X-Parley-Idempotency-Key`` already accepted is answered with the
        original response and not recorded again: the simulator plays the platform-side
        idempotency key that DESIGN.md assumes. Meta's API has no such key; against the real
        platform a send retried after a crash can reach the customer twice (docs/channels.md).
        """
        self.stats["send_calls"] += 1
        self.per_second[int(time.time())] += 1
        if idempotency_header and idempotency_header in self.accepted_by_key:
            self.stats["idempotent_replays"] = self.stats.get("idempotent_replays", 0) + 1
            return self.accepted_by_key[idempotency_header]
        if body.get("messaging_product") != "whatsapp":
            raise GraphError(100, "The parameter messaging_product is required and must be 'whatsapp'.")
        recipient = body.get("recipient") if body.get("recipient") is not None else body.get("to")
        if not isinstance(recipient, str) or not recipient.strip():
            raise GraphError(100, "The parameter to is required.")
        kind = body.get("type", "text")
        if kind not in SEND_TYPES:
            raise GraphError(131051, f"Unsupported message type: {kind}")
        self._check_content(kind, body.get(kind))
        self._check_rate(account, number.phone_number_id)

        user = account.find_user(recipient)
        if user is None and account.limits.undeliverable == "sync":
            raise GraphError(131026, "Message Undeliverable: the recipient is not a WhatsApp user.")
        template = self._check_template(account, body) if kind == "template" else None
        if user is not None:
            window_open = self.window_open(user, number.phone_number_id)
            if kind != "template" and not window_open:
                raise GraphError(
                    131047,
                    "Message failed to send because more than 24 hours have passed since the customer last "
                    "replied to this number.",
                )
            if account.limits.pair_interval_s > 0:
                last = user.last_received_at.get(number.phone_number_id)
                if last is not None and time.monotonic() - last < account.limits.pair_interval_s:
                    raise GraphError(
                        131056,
                        "Message failed to send because there were too many messages sent from this phone number to the same phone number in a short period of time.",
                    )
            if kind == "template" and not window_open:
                self._count_reach(account, user)
            user.last_received_at[number.phone_number_id] = time.monotonic()

        callback = body.get("biz_opaque_callback_data")
        key = callback if isinstance(callback, str) and callback else idempotency_header
        duplicate = key is not None and key in self.seen_keys
        if key is not None:
            self.seen_keys.add(key)
        wamid = self.new_wamid(user or SimUser(name="", wa_id=recipient.strip().removeprefix("+")))
        context = body.get("context")
        entry: dict[str, Any] = {
            "wamid": wamid,
            "waba_id": account.waba_id,
            "phone_number_id": number.phone_number_id,
            "to": recipient,
            "recipient_field": "recipient" if body.get("recipient") is not None else "to",
            "wa_id": user.wa_id if user else None,
            "type": kind,
            "content": body.get(kind),
            "template": body.get("template") if kind == "template" else None,
            "context_message_id": context.get("message_id") if isinstance(context, dict) else None,
            "biz_opaque_callback_data": callback if isinstance(callback, str) else None,
            "idempotency_key": key,
            "idempotency_header": idempotency_header,
            "duplicate": duplicate,
            "timestamp": self.now(),
            "status": "accepted",
            "statuses": [],
        }
        self.record.append(entry)
        if len(self.record) > MAX_RECORD:
            del self.record[: len(self.record) - MAX_RECORD]
        self.messages[wamid] = entry
        self.stats["accepted"] += 1
        if duplicate:
            self.stats["duplicates"] += 1
        if user is not None:
            shown = {
                "id": wamid,
                "direction": "out",
                "type": kind,
                "timestamp": entry["timestamp"],
                "status": "accepted",
                "reply_to": entry["context_message_id"],
            } | _display(kind, body.get(kind), template)
            self.conversation(number.phone_number_id, user).append(shown)
            self.shown[wamid] = shown
        self.spawn(self._lifecycle(account, number, entry, user))

        contact: dict[str, Any] = {"input": recipient}
        if user is not None and BSUID_RE.match(recipient.strip()):
            contact["user_id"] = user.bsuid
        else:
            contact["wa_id"] = user.wa_id if user else recipient.strip().removeprefix("+")
        sent: dict[str, Any] = {"id": wamid}
        if kind == "template":
            sent["message_status"] = "accepted"
        answer = {"messaging_product": "whatsapp", "contacts": [contact], "messages": [sent]}
        if idempotency_header:
            self.accepted_by_key[idempotency_header] = answer
        return answer

    def _count_reach(self, account: Account, user: SimUser) -> None:
        limit = account.limits.messaging_limit
        now = self.now()
        if limit is None:
            # Nothing to check against; expired entries are dropped when a limit is next checked.
            account.template_reach[user.key] = now
            return
        reach = {k: t for k, t in account.template_reach.items() if now - t < WINDOW_S}
        account.template_reach = reach
        if user.key not in reach and len(reach) >= limit:
            raise GraphError(
                131048,
                f"Message failed to send because this business has reached its messaging limit of {limit} unique "
                "users in 24 hours.",
            )
        reach[user.key] = now

    async def _lifecycle(
        self, account: Account, number: PhoneNumber, entry: dict[str, Any], user: SimUser | None
    ) -> None:
        limits = account.limits
        await asyncio.sleep(limits.status_delay_s)
        if user is None:
            await self.emit_status(account, entry, "failed", error={"code": 131026})
            return
        await self.emit_status(account, entry, "sent")
        if limits.status_mode != "auto":
            return
        await asyncio.sleep(limits.status_delay_s)
        await self.emit_status(account, entry, "delivered")
        if limits.auto_read:
            await asyncio.sleep(limits.status_delay_s)
            await self.emit_status(account, entry, "read")

    def status_object(
        self, account: Account, entry: dict[str, Any], status: str, error: dict[str, Any] | None
    ) -> dict[str, Any]:
        user = account.find_user(entry["wa_id"]) if entry.get("wa_id") else None
        obj: dict[str, Any] = {"id": entry["wamid"], "status": status, "timestamp": str(int(self.now()))}
        if user is None or not user.hide_phone:
            obj["recipient_id"] = user.wa_id if user else str(entry["to"]).removeprefix("+")
        if user is not None and user.bsuid:
            obj["recipient_user_id"] = user.bsuid
        if entry.get("biz_opaque_callback_data"):
            obj["biz_opaque_callback_data"] = entry["biz_opaque_callback_data"]
        if status in ("sent", "delivered", "read"):
            category = "service"
            if entry["type"] == "template":
                stored = account.template(entry["template"]["name"], entry["template"]["language"]["code"])
                category = str((stored or {}).get("category", "UTILITY")).lower()
            obj["pricing"] = {
                "billable": category != "service",
                "pricing_model": "PMP",
                "category": category,
                "type": "regular" if category != "service" else "free_customer_service",
            }
        if status == "failed":
            code = int((error or {}).get("code", 131000))
            title = str((error or {}).get("title") or ERRORS.get(code, ("Error", 400))[0])
            obj["errors"] = [
                {
                    "code": code,
                    "title": title,
                    "message": str((error or {}).get("message") or title),
                    "error_data": {"details": str((error or {}).get("details") or title)},
                    "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
                }
            ]
        return obj

    async def emit_status(
        self, account: Account, entry: dict[str, Any], status: str, *, error: dict[str, Any] | None = None
    ) -> Delivery | None:
        number = account.phone_numbers[entry["phone_number_id"]]
        obj = self.status_object(account, entry, status, error)
        entry["status"] = status
        entry["statuses"].append({"status": status, "timestamp": self.now()})
        item = self.shown.get(entry["wamid"])
        if item is not None:
            item["status"] = status
            if error:
                item["error"] = obj["errors"][0]
        if not account.limits.webhooks_subscribed:
            return None
        body = self.encode(self.envelope(account, [self.messages_change(number, statuses=[obj])]))
        delivery = self.new_delivery(account, f"status:{status}", body)
        return await self.deliver(account, delivery)

    def mark_read(self, number: PhoneNumber, message_id: str) -> None:
        account = self.account_of_number(number.phone_number_id)
        if account is None:
            return
        for (waba, pnid, _), items in self.conversations.items():
            if waba != account.waba_id or pnid != number.phone_number_id:
                continue
            for item in items:
                if item["id"] == message_id and item["direction"] == "in":
                    item["status"] = "read"
                    return
        raise GraphError(100, f"Invalid parameter: message_id {message_id} was not received by this number.")


def _placeholders(template: dict[str, Any], component_type: str) -> int:
    for component in template.get("components", []):
        if str(component.get("type", "")).upper() == component_type and isinstance(
            component.get("text"), str
        ):
            return len(set(PLACEHOLDER_RE.findall(component["text"])))
    return 0


def render_template(stored: dict[str, Any] | None, sent: dict[str, Any]) -> dict[str, Any]:
    """What the user's phone shows for a template send: texts with parameters filled in, quick replies."""
    params: dict[str, list[Any]] = {}
    buttons_payload: dict[int, str] = {}
    for component in sent.get("components") or []:
        kind = str(component.get("type", "")).lower()
        if kind in ("header", "body"):
            params[kind] = list(component.get("parameters") or [])
        elif kind == "button" and str(component.get("sub_type", "")).lower() == "quick_reply":
            for parameter in component.get("parameters") or []:
                if parameter.get("type") == "payload":
                    buttons_payload[int(component.get("index", 0))] = str(parameter.get("payload"))

    def fill(text: str, values: list[Any]) -> str:
        def value_of(match: re.Match[str]) -> str:
            name = match.group(1)
            for i, parameter in enumerate(values):
                if parameter.get("parameter_name") == name or str(i + 1) == name:
                    if parameter.get("type") == "text":
                        return str(parameter.get("text"))
                    nested = parameter.get(parameter.get("type", ""), {})
                    return str(nested.get("fallback_value", nested) if isinstance(nested, dict) else nested)
            return match.group(0)

        return PLACEHOLDER_RE.sub(value_of, text)

    out: dict[str, Any] = {"template_name": sent.get("name")}
    quick_replies: list[dict[str, str]] = []
    for component in (stored or {}).get("components", []):
        kind = str(component.get("type", "")).upper()
        if kind == "HEADER" and component.get("text"):
            out["header"] = fill(str(component["text"]), params.get("header", []))
        elif kind == "BODY" and component.get("text"):
            out["text"] = fill(str(component["text"]), params.get("body", []))
        elif kind == "FOOTER" and component.get("text"):
            out["footer"] = str(component["text"])
        elif kind == "BUTTONS":
            for index, button in enumerate(component.get("buttons", [])):
                if button.get("type") == "QUICK_REPLY":
                    quick_replies.append(
                        {
                            "payload": buttons_payload.get(index, str(button.get("text"))),
                            "title": str(button.get("text")),
                        }
                    )
    if quick_replies:
        out["quick_replies"] = quick_replies
    if "text" not in out:
        out["text"] = f"[template {sent.get('name')}]"
    return out


def _display(kind: str, obj: Any, template: dict[str, Any] | None) -> dict[str, Any]:
    """The fields the phone page needs to draw an outbound message."""
    if not isinstance(obj, dict):
        return {}
    if kind == "text":
        return {"text": obj.get("body")}
    if kind in MEDIA_TYPES:
        return {
            "media_id": obj.get("id"),
            "link": obj.get("link"),
            "caption": obj.get("caption"),
            "filename": obj.get("filename"),
        }
    if kind == "location":
        return {"location": obj}
    if kind == "reaction":
        return {"emoji": obj.get("emoji"), "reply_to": obj.get("message_id")}
    if kind == "interactive":
        body = obj.get("body") or {}
        header = obj.get("header") or {}
        footer = obj.get("footer") or {}
        action = obj.get("action") or {}
        replies = [
            {"id": b.get("reply", {}).get("id"), "title": b.get("reply", {}).get("title")}
            for b in action.get("buttons", [])
        ]
        rows = [
            {"id": r.get("id"), "title": r.get("title"), "description": r.get("description")}
            for s in action.get("sections", [])
            for r in s.get("rows", [])
        ]
        return {
            "text": body.get("text"),
            "header": header.get("text"),
            "footer": footer.get("text"),
            "interactive_type": obj.get("type"),
            "buttons": replies,
            "rows": rows,
            "list_button": action.get("button"),
        }
    if kind == "template":
        return render_template(template, obj)
    return {"text": f"[{kind}]"}
