"""The WhatsApp Cloud platform simulator as an ASGI app: Graph API, control API and the phone page.

Three surfaces on one port:

* **Graph API** (what Parley's adapter calls), exact paths and envelopes:
  ``POST /{version}/{phone_number_id}/messages`` (sends and read receipts),
  ``POST /{version}/{phone_number_id}/media``, ``GET|DELETE /{version}/{media_id}``,
  ``GET /whatsapp_business/attachments/?mid=…`` (media download, Bearer needed),
  ``GET|POST /{version}/{waba_id}/message_templates``,
  ``GET /{version}/{waba_id}/phone_numbers``, ``GET /{version}/{phone_number_id}``.
* **Control API** under ``/_sandbox/`` (JSON, no auth): accounts, users and
  what they do, statuses, limits and fault injection, the record of what
  Parley sent, webhook delivery log, stats and the clock.
* **Phone page** at ``/``: a WhatsApp-like chat per simulated user.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

import httpx
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from parley.sandbox.whatsapp.platform import (
    DEFAULT_API_VERSION,
    Account,
    Fault,
    GraphError,
    PhoneNumber,
    Platform,
    SimUser,
)
from parley.sandbox.whatsapp.seeds import SEED_TEMPLATES

HERE = Path(__file__).parent
VERSION_RE = re.compile(r"^v\d{1,2}\.\d$")
TEMPLATE_NAME_RE = re.compile(r"^[a-z0-9_]{1,512}$")
CATEGORIES = {"MARKETING", "UTILITY", "AUTHENTICATION"}


class RawHTTPError(Exception):
    """A non-Graph failure (a load balancer's 502/503 page), for fault injection."""

    def __init__(self, status_code: int) -> None:
        super().__init__(status_code)
        self.status_code = status_code


# --- control API shapes ----------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PhoneNumberIn(_Strict):
    phone_number_id: str = Field(pattern=r"^\d+$")
    display_phone_number: str
    verified_name: str = "Parley Demo"


class AccountIn(_Strict):
    business_account_id: str = Field(pattern=r"^\d+$")
    phone_numbers: list[PhoneNumberIn] = Field(min_length=1)
    access_token: str = Field(min_length=1)
    app_secret: str = Field(min_length=1)
    verify_token: str = Field(min_length=1)
    webhook_url: str = Field(min_length=1)
    api_version: str = DEFAULT_API_VERSION
    seed_templates: bool = True


class AccountUpdate(_Strict):
    webhook_url: str | None = None
    access_token: str | None = None
    app_secret: str | None = None
    verify_token: str | None = None


class UserIn(_Strict):
    name: str
    wa_id: str = Field(pattern=r"^\d{6,20}$")
    bsuid: str | None = Field(default=None, pattern=r"^[A-Z]{2}\.(ENT\.)?[A-Za-z0-9]{1,128}$")
    username: str | None = None
    hide_phone: bool = False


class ActionIn(BaseModel):
    # Open on purpose: each action type has its own fields (text, caption, latitude, reply_id…).
    model_config = ConfigDict(extra="allow")
    type: str = "text"
    to_phone_number_id: str | None = None
    wait: bool = True


class BatchItem(_Strict):
    user: str | None = None
    action: dict[str, Any] | None = None
    status: dict[str, Any] | None = None  # {"wamid", "status", "error"?}


class BatchIn(_Strict):
    items: list[BatchItem] = Field(min_length=1)
    layout: Literal["one_change", "change_per_item", "entry_per_item"] = "one_change"
    wait: bool = True


class RawWebhookIn(_Strict):
    body: Any
    signature: Literal["valid", "invalid", "missing"] = "valid"
    wait: bool = True


class VerifyIn(_Strict):
    verify_token: str | None = None
    mode: str = "subscribe"


class FaultIn(_Strict):
    count: int = Field(default=1, ge=1)
    code: int | None = None
    http_status: int | None = Field(default=None, ge=400, le=599)
    delay_s: float = Field(default=0.0, ge=0, le=120)
    message: str | None = None


class LimitsIn(_Strict):
    rate_per_s: float | None = Field(default=None, gt=0)
    pair_interval_s: float | None = Field(default=None, ge=0)
    messaging_limit: int | None = Field(default=None, ge=0)
    unlimited_messaging: bool | None = None
    status_mode: Literal["auto", "manual"] | None = None
    auto_read: bool | None = None
    status_delay_s: float | None = Field(default=None, ge=0)
    webhook_retry_delays_s: list[float] | None = None
    webhook_timeout_s: float | None = Field(default=None, gt=0)
    undeliverable: Literal["sync", "status"] | None = None
    webhooks_subscribed: bool | None = None
    faults: list[FaultIn] | None = None


class TemplateIn(BaseModel):
    model_config = ConfigDict(extra="allow")  # Meta's creation payloads carry many optional fields
    name: str
    language: str
    category: str
    components: list[dict[str, Any]] = Field(default_factory=list)
    status: Literal["APPROVED", "PENDING", "REJECTED", "PAUSED", "DISABLED"] = "APPROVED"


class StatusIn(_Strict):
    status: Literal["sent", "delivered", "read", "failed", "played"]
    error: dict[str, Any] | None = None
    wait: bool = True


class ClockIn(_Strict):
    advance_s: float | None = None
    offset_s: float | None = None


# --- helpers ---------------------------------------------------------------------------------


def _account(platform: Platform, waba_id: str) -> Account:
    account = platform.accounts.get(waba_id)
    if account is None:
        raise HTTPException(404, f"no simulated account {waba_id}")
    return account


def _user(account: Account, key: str) -> SimUser:
    user = account.find_user(key)
    if user is None:
        raise HTTPException(404, f"no simulated user {key} in account {account.waba_id}")
    return user


def _number(account: Account, phone_number_id: str | None) -> PhoneNumber:
    try:
        return (
            account.phone_numbers[phone_number_id]
            if phone_number_id
            else next(iter(account.phone_numbers.values()))
        )
    except KeyError:
        raise HTTPException(404, f"account {account.waba_id} has no phone number {phone_number_id}") from None


def _check_version(version: str) -> None:
    if not VERSION_RE.match(version):
        raise GraphError(100, f"Unknown path components: /{version}", http_status=400)


def _bearer(request: Request, platform: Platform) -> Account:
    return _bearer_account(request.headers.get("authorization", ""), platform)


def _bearer_account(header: str, platform: Platform) -> Account:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise GraphError(
            190,
            "An active access token must be used to query information.",
            message="Invalid OAuth access token",
        )
    account = platform.account_by_token(token.strip())
    if account is None:
        raise GraphError(190, "Invalid OAuth access token - Cannot parse access token")
    return account


def _owned_number(account: Account, node: str) -> PhoneNumber:
    number = account.phone_numbers.get(node)
    if number is None:
        raise GraphError(
            100,
            f"Unsupported post request. Object with ID '{node}' does not exist, cannot be loaded due to missing "
            "permissions, or does not support this operation.",
            subcode=33,
        )
    return number


async def _apply_fault(platform: Platform, account: Account) -> None:
    fault = platform.take_fault(account)
    if fault is None:
        return
    if fault.delay_s:
        await asyncio.sleep(fault.delay_s)
    if fault.code is not None:
        platform.errors_by_code[fault.code] += 1
        raise GraphError(fault.code, fault.message or "injected fault", http_status=fault.http_status)
    if fault.http_status is not None:
        raise RawHTTPError(fault.http_status)


def _validate_template(data: TemplateIn) -> None:
    if not TEMPLATE_NAME_RE.match(data.name):
        raise GraphError(100, "Template name may contain only lowercase letters, digits and underscores.")
    if data.category.upper() not in CATEGORIES:
        raise GraphError(
            100, f"Invalid template category {data.category}; use MARKETING, UTILITY or AUTHENTICATION."
        )
    for component in data.components:
        if str(component.get("type", "")).upper() not in {
            "HEADER",
            "BODY",
            "FOOTER",
            "BUTTONS",
            "CAROUSEL",
            "LIMITED_TIME_OFFER",
        }:
            raise GraphError(100, f"Invalid component type {component.get('type')!r}.")


def _add_template(account: Account, data: TemplateIn) -> dict[str, Any]:
    _validate_template(data)
    template = data.model_dump()
    template["category"] = data.category.upper()
    existing = account.template(data.name, data.language)
    if existing is not None:
        account.templates.remove(existing)
        template["id"] = existing["id"]
    else:
        template["id"] = str(10**15 + len(account.templates) + 1 + hash(data.name) % 10**9)
    account.templates.append(template)
    return template


def _public_template(template: dict[str, Any]) -> dict[str, Any]:
    return {
        k: template[k]
        for k in ("name", "language", "status", "category", "id", "components")
        if k in template
    }


# --- POST /{version}/{node}/messages -------------------------------------------------------------


def _json_bytes(content: Any) -> bytes:
    # The same encoding as Starlette's JSONResponse.
    return json.dumps(
        content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode()


class MessagesEndpoint:
    """The Graph API's send endpoint as plain ASGI; every other request goes on to FastAPI.

    Same rules and answers as the rest of the Graph API: version and Bearer token checked, the
    number must belong to the token's account, injected faults applied, Graph error envelopes
    (``WWW-Authenticate`` on 190), each error counted in the stats.
    """

    def __init__(self, app: ASGIApp, platform: Platform) -> None:
        self.app = app
        self.platform = platform

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            parts = scope["path"].split("/")
            if len(parts) == 4 and parts[3] == "messages" and not parts[0] and parts[1] and parts[2]:
                await self._messages(parts[1], parts[2], scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _messages(self, version: str, node: str, scope: Scope, receive: Receive, send: Send) -> None:
        platform = self.platform
        headers: list[tuple[bytes, bytes]] = []
        try:
            answer = await self._answer(version, node, scope, receive)
            status, body = 200, _json_bytes(answer)
        except GraphError as exc:
            platform.errors_by_code[exc.code] += 1
            status, body = exc.http_status, _json_bytes(exc.body())
            if exc.code == 190:
                headers.append((b"www-authenticate", b"OAuth"))
        except RawHTTPError as exc:
            html = f"<html><body>{exc.status_code} Error</body></html>".encode()
            await _respond(send, exc.status_code, html, b"text/html; charset=utf-8", headers)
            return
        except ClientDisconnect:
            return  # the sender hung up before its body arrived: nothing was sent, nothing to answer
        await _respond(send, status, body, b"application/json", headers)

    async def _answer(self, version: str, node: str, scope: Scope, receive: Receive) -> dict[str, Any]:
        platform = self.platform
        authorization, idempotency_key = "", None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"x-parley-idempotency-key":
                idempotency_key = value.decode("latin-1")
        _check_version(version)
        account = _bearer_account(authorization, platform)
        number = _owned_number(account, node)
        await _apply_fault(platform, account)
        raw = await _read_body(receive)
        try:
            body = json.loads(raw)
        except ValueError:
            raise GraphError(100, "The request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise GraphError(100, "The request body must be a JSON object.")
        if body.get("status") == "read":
            message_id = body.get("message_id")
            if not isinstance(message_id, str):
                raise GraphError(131008, "The parameter message_id is required.")
            platform.mark_read(number, message_id)
            return {"success": True}
        return platform.send(account, number, body, idempotency_key)


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _respond(
    send: Send, status: int, body: bytes, content_type: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# --- the app ---------------------------------------------------------------------------------


def create_app(*, transport: httpx.AsyncBaseTransport | None = None) -> FastAPI:
    """A fresh simulator with empty state.

    Args:
        transport: how the simulator reaches webhook URLs; tests may pass an
            ``httpx.ASGITransport`` to deliver into an app in the same process.
    """
    platform = Platform(transport=transport)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await platform.close()

    app = FastAPI(
        title="WhatsApp Cloud API sandbox",
        lifespan=lifespan,
        docs_url="/_sandbox/docs",
        openapi_url="/_sandbox/openapi.json",
    )
    app.state.platform = platform

    @app.exception_handler(GraphError)
    async def graph_error(_: Request, exc: GraphError) -> JSONResponse:
        platform.errors_by_code[exc.code] += 1
        return JSONResponse(
            exc.body(),
            status_code=exc.http_status,
            headers={"WWW-Authenticate": "OAuth"} if exc.code == 190 else None,
        )

    @app.exception_handler(RawHTTPError)
    async def raw_error(_: Request, exc: RawHTTPError) -> Response:
        return Response(
            f"<html><body>{exc.status_code} Error</body></html>",
            status_code=exc.status_code,
            media_type="text/html",
        )

    # --- page -------------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(HERE / "templates" / "phone.html", media_type="text/html")

    app.mount("/_sandbox/static", StaticFiles(directory=HERE / "static"), name="static")

    # --- control API ------------------------------------------------------------------------

    @app.post("/_sandbox/reset")
    async def reset() -> dict[str, bool]:
        platform.reset()
        return {"ok": True}

    @app.get("/_sandbox/state")
    async def state() -> dict[str, Any]:
        return {"now": platform.now(), "accounts": [a.public() for a in platform.accounts.values()]}

    @app.post("/_sandbox/accounts", status_code=201)
    async def create_account(data: AccountIn) -> dict[str, Any]:
        if not VERSION_RE.match(data.api_version):
            raise HTTPException(422, f"api_version must look like v25.0, got {data.api_version!r}")
        for number in data.phone_numbers:
            owner = platform.account_of_number(number.phone_number_id)
            if owner is not None and owner.waba_id != data.business_account_id:
                raise HTTPException(
                    409, f"phone number {number.phone_number_id} belongs to account {owner.waba_id}"
                )
        account = Account(
            waba_id=data.business_account_id,
            phone_numbers={
                n.phone_number_id: PhoneNumber(n.phone_number_id, n.display_phone_number, n.verified_name)
                for n in data.phone_numbers
            },
            access_token=data.access_token,
            app_secret=data.app_secret,
            verify_token=data.verify_token,
            webhook_url=data.webhook_url,
            api_version=data.api_version,
        )
        previous = platform.accounts.get(data.business_account_id)
        if previous is not None:
            # Re-registering keeps users and templates, as reconfiguring a real app would.
            account.users, account.templates, account.limits = (
                previous.users,
                previous.templates,
                previous.limits,
            )
        elif data.seed_templates:
            for seed in SEED_TEMPLATES:
                _add_template(account, TemplateIn.model_validate(seed))
        platform.accounts[account.waba_id] = account
        return account.public()

    @app.get("/_sandbox/accounts/{waba_id}")
    async def get_account(waba_id: str) -> dict[str, Any]:
        return _account(platform, waba_id).public()

    @app.patch("/_sandbox/accounts/{waba_id}")
    async def update_account(waba_id: str, data: AccountUpdate) -> dict[str, Any]:
        account = _account(platform, waba_id)
        for key, value in data.model_dump(exclude_none=True).items():
            setattr(account, key, value)
        return account.public()

    @app.post("/_sandbox/accounts/{waba_id}/verify-webhook")
    async def verify_webhook(waba_id: str, data: VerifyIn | None = None) -> dict[str, Any]:
        """Performs Meta's GET challenge against the account's webhook URL."""
        account = _account(platform, waba_id)
        data = data or VerifyIn()
        challenge = str(1_000_000_000 + secrets.randbelow(9 * 10**9))
        params = {
            "hub.mode": data.mode,
            "hub.challenge": challenge,
            "hub.verify_token": data.verify_token if data.verify_token is not None else account.verify_token,
        }
        try:
            response = await platform.http().get(
                account.webhook_url, params=params, timeout=account.limits.webhook_timeout_s
            )
        except httpx.HTTPError as exc:
            return {"ok": False, "challenge": challenge, "error": f"{type(exc).__name__}: {exc}"}
        return {
            "ok": response.status_code == 200 and response.text == challenge,
            "challenge": challenge,
            "status_code": response.status_code,
            "body": response.text[:500],
            "content_type": response.headers.get("content-type"),
        }

    @app.post("/_sandbox/accounts/{waba_id}/users", status_code=201)
    async def create_user(waba_id: str, data: UserIn) -> dict[str, Any]:
        account = _account(platform, waba_id)
        if data.bsuid and any(
            u.bsuid == data.bsuid and u.wa_id != data.wa_id for u in account.users.values()
        ):
            raise HTTPException(409, f"business-scoped user id {data.bsuid} is taken")
        user = SimUser(
            name=data.name,
            wa_id=data.wa_id,
            bsuid=data.bsuid,
            username=data.username,
            hide_phone=data.hide_phone,
        )
        previous = account.users.get(data.wa_id)
        if previous is not None:
            user.last_inbound_at = previous.last_inbound_at
        account.users[user.wa_id] = user
        return user.public()

    @app.get("/_sandbox/accounts/{waba_id}/users")
    async def list_users(waba_id: str) -> list[dict[str, Any]]:
        return [u.public() for u in _account(platform, waba_id).users.values()]

    @app.post("/_sandbox/accounts/{waba_id}/users/{user_key}/actions")
    async def user_action(waba_id: str, user_key: str, data: ActionIn, request: Request) -> dict[str, Any]:
        """The user does something in WhatsApp; the platform sends Parley the webhook (with retries)."""
        account = _account(platform, waba_id)
        user = _user(account, user_key)
        number = _number(account, data.to_phone_number_id)
        action = data.model_dump(exclude={"to_phone_number_id", "wait"})
        try:
            message = platform.user_message(account, user, number, action, str(request.base_url))
        except (KeyError, ValueError, TypeError) as exc:
            raise HTTPException(422, f"bad {data.type} action: {exc}") from exc
        payload = platform.envelope(account, [platform.messages_change(number, messages=[(user, message)])])
        delivery = platform.new_delivery(account, f"message:{message['type']}", platform.encode(payload))
        if data.wait:
            await platform.deliver(account, delivery)
        else:
            platform.spawn(platform.deliver(account, delivery))
        return {"wamid": message["id"], "payload": payload, "delivery": delivery.public()}

    @app.get("/_sandbox/accounts/{waba_id}/users/{user_key}/conversation")
    async def conversation(waba_id: str, user_key: str, phone_number_id: str | None = None) -> dict[str, Any]:
        account = _account(platform, waba_id)
        user = _user(account, user_key)
        number = _number(account, phone_number_id)
        last = user.last_inbound_at.get(number.phone_number_id)
        return {
            "user": user.public(),
            "phone_number": number.public(),
            "window_open": platform.window_open(user, number.phone_number_id),
            "window_closes_at": last + 24 * 3600 if last is not None else None,
            "now": platform.now(),
            "items": platform.conversation(number.phone_number_id, user),
        }

    @app.post("/_sandbox/accounts/{waba_id}/batch")
    async def batch(waba_id: str, data: BatchIn, request: Request) -> dict[str, Any]:
        """Several messages and statuses in one webhook POST, laid out as one or many changes / entries."""
        account = _account(platform, waba_id)
        number = next(iter(account.phone_numbers.values()))
        changes: list[dict[str, Any]] = []
        wamids: list[str] = []
        pending_messages: list[tuple[SimUser, dict[str, Any]]] = []
        pending_statuses: list[dict[str, Any]] = []
        for item in data.items:
            if item.action is not None:
                if item.user is None:
                    raise HTTPException(422, "a batch action needs its user")
                user = _user(account, item.user)
                action = dict(item.action)
                message = platform.user_message(account, user, number, action, str(request.base_url))
                wamids.append(message["id"])
                if data.layout == "one_change":
                    pending_messages.append((user, message))
                else:
                    changes.append(platform.messages_change(number, messages=[(user, message)]))
            elif item.status is not None:
                entry = platform.messages.get(str(item.status.get("wamid")))
                if entry is None:
                    raise HTTPException(404, f"no message {item.status.get('wamid')} was sent")
                obj = platform.status_object(
                    account, entry, str(item.status.get("status")), item.status.get("error")
                )
                if data.layout == "one_change":
                    pending_statuses.append(obj)
                else:
                    changes.append(platform.messages_change(number, statuses=[obj]))
        if data.layout == "one_change":
            changes.append(
                platform.messages_change(number, messages=pending_messages, statuses=pending_statuses)
            )
        if data.layout == "entry_per_item":
            payload: dict[str, Any] = {
                "object": "whatsapp_business_account",
                "entry": [{"id": account.waba_id, "changes": [change]} for change in changes],
            }
        else:
            payload = platform.envelope(account, changes)
        delivery = platform.new_delivery(account, "batch", platform.encode(payload))
        if data.wait:
            await platform.deliver(account, delivery)
        else:
            platform.spawn(platform.deliver(account, delivery))
        return {"wamids": wamids, "payload": payload, "delivery": delivery.public()}

    @app.post("/_sandbox/accounts/{waba_id}/webhooks/raw")
    async def raw_webhook(waba_id: str, data: RawWebhookIn) -> dict[str, Any]:
        """Sends any body (a JSON value, or a string sent verbatim), signed as asked."""
        account = _account(platform, waba_id)
        body = data.body.encode() if isinstance(data.body, str) else platform.encode(data.body)
        delivery = platform.new_delivery(account, "raw", body)
        if data.wait:
            await platform.deliver(account, delivery, signature=data.signature)
        else:
            platform.spawn(platform.deliver(account, delivery, signature=data.signature))
        return {"delivery": delivery.public()}

    @app.get("/_sandbox/webhooks")
    async def webhooks(
        kind: str | None = None, limit: Annotated[int, Query(ge=1, le=2000)] = 100
    ) -> list[dict[str, Any]]:
        items = [d for d in platform.deliveries if kind is None or d.kind.startswith(kind)]
        return [d.public(with_body=True) for d in items[-limit:]]

    @app.post("/_sandbox/accounts/{waba_id}/limits")
    async def set_limits(waba_id: str, data: LimitsIn) -> dict[str, Any]:
        limits = _account(platform, waba_id).limits
        values = data.model_dump(exclude_none=True, exclude={"faults", "unlimited_messaging"})
        for key, value in values.items():
            setattr(limits, key, value)
        if data.unlimited_messaging:
            limits.messaging_limit = None
        if data.faults is not None:
            limits.faults = [Fault(**f.model_dump()) for f in data.faults]
        return limits.public()

    @app.get("/_sandbox/accounts/{waba_id}/limits")
    async def get_limits(waba_id: str) -> dict[str, Any]:
        return _account(platform, waba_id).limits.public()

    @app.post("/_sandbox/accounts/{waba_id}/templates", status_code=201)
    async def add_template(waba_id: str, data: TemplateIn) -> dict[str, Any]:
        try:
            return _add_template(_account(platform, waba_id), data)
        except GraphError as exc:
            raise HTTPException(422, exc.details) from exc

    @app.get("/_sandbox/accounts/{waba_id}/templates")
    async def list_sandbox_templates(waba_id: str) -> list[dict[str, Any]]:
        return _account(platform, waba_id).templates

    @app.post("/_sandbox/messages/{wamid:path}/status")
    async def set_status(wamid: str, data: StatusIn) -> dict[str, Any]:
        entry = platform.messages.get(wamid)
        if entry is None:
            raise HTTPException(404, f"no message {wamid} was sent")
        account = _account(platform, entry["waba_id"])
        if data.wait:
            delivery = await platform.emit_status(account, entry, data.status, error=data.error)
            return {"delivery": delivery.public() if delivery is not None else None}
        platform.spawn(platform.emit_status(account, entry, data.status, error=data.error))
        return {"delivery": None}

    @app.get("/_sandbox/record", response_model=None)
    async def get_record(
        to: str | None = None, since: float | None = None, phone_number_id: str | None = None
    ) -> Response:
        items = platform.record
        if to is not None:
            wanted = to.removeprefix("+")
            items = [r for r in items if str(r["to"]).removeprefix("+") == wanted or r.get("wa_id") == wanted]
        if since is not None:
            items = [r for r in items if r["timestamp"] >= since]
        if phone_number_id is not None:
            items = [r for r in items if r["phone_number_id"] == phone_number_id]
        # Encoded as it is, without FastAPI's pass over every field: tests and the benchmark poll a
        # record of tens of thousands of entries while the simulator is also taking sends.
        return Response(_json_bytes(items), media_type="application/json")

    @app.delete("/_sandbox/record")
    async def clear_record() -> dict[str, bool]:
        platform.record.clear()
        platform.seen_keys.clear()
        return {"ok": True}

    @app.get("/_sandbox/stats")
    async def stats() -> dict[str, Any]:
        return {
            "counts": dict(platform.stats),
            "errors_by_code": {str(k): v for k, v in platform.errors_by_code.items()},
            "per_second": {str(k): v for k, v in sorted(platform.per_second.items())},
            "record_size": len(platform.record),
            "background_tasks": platform.background_tasks,
        }

    @app.get("/_sandbox/clock")
    async def get_clock() -> dict[str, float]:
        return {"now": platform.now(), "offset_s": platform.clock_offset_s}

    @app.post("/_sandbox/clock")
    async def set_clock(data: ClockIn) -> dict[str, float]:
        if data.offset_s is not None:
            platform.clock_offset_s = data.offset_s
        if data.advance_s is not None:
            platform.clock_offset_s += data.advance_s
        return {"now": platform.now(), "offset_s": platform.clock_offset_s}

    @app.post("/_sandbox/idle")
    async def idle(timeout_s: Annotated[float, Query(gt=0, le=120)] = 10.0) -> dict[str, bool]:
        """Waits for background webhooks (status sequences, wait=false actions) to finish."""
        return {"idle": await platform.idle(timeout_s)}

    @app.get("/_sandbox/media/{media_id}")
    async def sandbox_media(media_id: str) -> Response:
        stored = platform.media.get(media_id)
        if stored is None:
            raise HTTPException(404, f"no media {media_id}")
        return Response(stored.content, media_type=stored.mime_type)

    # --- Graph API --------------------------------------------------------------------------

    @app.get("/whatsapp_business/attachments/", include_in_schema=False)
    async def download(request: Request, mid: str = "", hash: str = "") -> Response:
        _bearer(request, platform)
        stored = platform.media_for_url(hash)
        if stored is None or stored.media_id != mid:
            # Meta answers an expired or forged lookaside URL with 404.
            return Response("URL signature expired", status_code=404, media_type="text/plain")
        return Response(stored.content, media_type=stored.mime_type)

    @app.post("/{version}/{node}/media")
    async def graph_upload(version: str, node: str, request: Request) -> dict[str, str]:
        _check_version(version)
        account = _bearer(request, platform)
        number = _owned_number(account, node)
        await _apply_fault(platform, account)
        form = await request.form()
        upload = form.get("file")
        if form.get("messaging_product") != "whatsapp":
            raise GraphError(100, "The parameter messaging_product is required and must be 'whatsapp'.")
        if upload is None or isinstance(upload, str):
            raise GraphError(131008, "The parameter file is required.")
        content = await upload.read()
        mime = str(form.get("type") or upload.content_type or "application/octet-stream")
        stored = platform.store_media(content, mime, upload.filename or "upload", number.phone_number_id)
        return {"id": stored.media_id}

    @app.get("/{version}/{waba_id}/message_templates")
    async def graph_templates(
        version: str,
        waba_id: str,
        request: Request,
        limit: int = 25,
        after: str | None = None,
        name: str | None = None,
        status: str | None = None,
    ) -> dict[str, Any]:
        _check_version(version)
        account = _bearer(request, platform)
        if account.waba_id != waba_id:
            raise GraphError(
                100, f"Unsupported get request. Object with ID '{waba_id}' does not exist.", subcode=33
            )
        await _apply_fault(platform, account)
        items = [
            t
            for t in account.templates
            if (name is None or t["name"] == name) and (status is None or t["status"] == status.upper())
        ]
        start = int(base64.urlsafe_b64decode(after.encode()).decode()) if after else 0
        limit = max(1, min(limit, 250))
        page_items = items[start : start + limit]
        end = start + len(page_items)
        paging: dict[str, Any] = {
            "cursors": {
                "before": base64.urlsafe_b64encode(str(start).encode()).decode(),
                "after": base64.urlsafe_b64encode(str(end).encode()).decode(),
            }
        }
        if end < len(items):
            paging["next"] = str(
                request.url.include_query_params(after=paging["cursors"]["after"], limit=limit)
            )
        return {"data": [_public_template(t) for t in page_items], "paging": paging}

    @app.post("/{version}/{waba_id}/message_templates")
    async def graph_create_template(version: str, waba_id: str, request: Request) -> dict[str, Any]:
        _check_version(version)
        account = _bearer(request, platform)
        if account.waba_id != waba_id:
            raise GraphError(
                100, f"Unsupported post request. Object with ID '{waba_id}' does not exist.", subcode=33
            )
        try:
            data = TemplateIn.model_validate(await request.json())
        except ValueError as exc:
            raise GraphError(100, f"Invalid template: {exc}") from None
        template = _add_template(account, data)
        update = {
            "event": template["status"],
            "message_template_id": int(template["id"]),
            "message_template_name": template["name"],
            "message_template_language": template["language"],
            "reason": "NONE",
            "message_template_category": template["category"],
        }
        body = platform.encode(
            platform.envelope(account, [{"value": update, "field": "message_template_status_update"}])
        )
        platform.spawn(platform.deliver(account, platform.new_delivery(account, "template_status", body)))
        return {"id": template["id"], "status": template["status"], "category": template["category"]}

    @app.get("/{version}/{waba_id}/phone_numbers")
    async def graph_phone_numbers(version: str, waba_id: str, request: Request) -> dict[str, Any]:
        _check_version(version)
        account = _bearer(request, platform)
        if account.waba_id != waba_id:
            raise GraphError(
                100, f"Unsupported get request. Object with ID '{waba_id}' does not exist.", subcode=33
            )
        return {"data": [n.public() for n in account.phone_numbers.values()], "paging": {"cursors": {}}}

    @app.get("/{version}/{node}")
    async def graph_node(version: str, node: str, request: Request) -> dict[str, Any]:
        _check_version(version)
        account = _bearer(request, platform)
        if node in account.phone_numbers:
            return account.phone_numbers[node].public()
        stored = platform.media.get(node)
        if stored is None:
            raise GraphError(
                100, f"Unsupported get request. Object with ID '{node}' does not exist.", subcode=33
            )
        return {
            "messaging_product": "whatsapp",
            "url": platform.media_url(str(request.base_url), stored.media_id),
            "mime_type": stored.mime_type,
            "sha256": stored.sha256_hex,
            "file_size": len(stored.content),
            "id": stored.media_id,
        }

    @app.delete("/{version}/{node}")
    async def graph_delete_media(version: str, node: str, request: Request) -> dict[str, bool]:
        _check_version(version)
        _bearer(request, platform)
        if platform.media.pop(node, None) is None:
            raise GraphError(
                100, f"Unsupported delete request. Object with ID '{node}' does not exist.", subcode=33
            )
        return {"success": True}

    # POST /{version}/{node}/messages (sends, read receipts) is served by this ASGI middleware ahead of
    # FastAPI's routing: it is nearly every request under load, and the route machinery (dependency
    # solving, request and response objects) cost more of the simulator's CPU than the send itself.
    app.add_middleware(MessagesEndpoint, platform=platform)
    return app
