"""The platforms' webhook POST, answered as plain ASGI ahead of FastAPI (docs/decisions/0012).

``POST /channels/{channel_type}/{account_id}/webhook`` is the high-rate route:
on the way through uvicorn, three middlewares, Starlette's exception layers,
routing and FastAPI's dependency machinery it cost about as much server CPU as
verifying, decrypting and parsing the push. :class:`EdgeApp` hands that one
request shape to :class:`WebhookEdge` before FastAPI sees it; everything else,
and any webhook path that does not parse (unknown channel type, not a UUID),
goes on to FastAPI as before.

The edge keeps what the middleware stack gave the route, in the same order:

1. the body size limit (:mod:`parley.ops.limits`): a declared Content-Length
   over the limit is refused with 413 before anything else (not counted in the
   metrics, as the limit sat outside the metrics middleware), streamed bytes
   past it are refused with 413 too;
2. the metrics (:mod:`parley.ops.metrics`), by route template;
3. the in-flight cap (:mod:`parley.ops.inflight`), on the same gate as the
   middleware: 503 with ``Retry-After``, recorded under route ``unmatched``
   as the middleware's metrics recorded it;
4. :func:`process_webhook`, the one implementation of the handler, which
   FastAPI's ``receive_webhook`` calls as well; a :class:`ParleyError` becomes
   its JSON payload, status and headers as ``parley.app._handle_error`` renders
   them for machine paths, anything else a plain 500 (re-raised for the server
   to log, as Starlette's ServerErrorMiddleware does).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import structlog
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from parley.automation.outbound import Responder
from parley.channels.base import (
    ChannelType,
    MalformedPayloadError,
    SignatureError,
    UnsupportedEventTypeError,
    WebhookAck,
    WebhookRequest,
)
from parley.channels.runtime import runtime
from parley.context import Context
from parley.conversations.intake import AccountGone, Intake, StaleAccount
from parley.exceptions import NotFound, ParleyError, ServiceBusy
from parley.ops.asgi import respond
from parley.ops.inflight import InflightGate
from parley.ops.limits import TooLarge, declared_too_large, refuse_too_large
from parley.ops.metrics import record

log = structlog.get_logger()

WEBHOOK_ROUTE = "/channels/{channel_type}/{account_id}/webhook"
UNMATCHED = "unmatched"
_CHANNEL_TYPES = {t.value: t for t in ChannelType}
_NOT_FOUND = "No active channel account at this webhook address"


# --- the handler, shared with FastAPI's route ------------------------------------------------


def problem(status_code: int, error: str, detail: str) -> WebhookAck:
    """``{"error": ..., "detail": ...}`` rendered as FastAPI's JSONResponse renders it."""
    return WebhookAck(_json({"error": error, "detail": detail}), "application/json", status_code)


def _json(content: Any) -> bytes:
    return json.dumps(
        content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode()


async def process_webhook(
    ctx: Context, intake: Intake, channel_type: ChannelType, account_id: uuid.UUID, webhook: WebhookRequest
) -> WebhookAck:
    """Verify, parse, store once, answer: the platform's delivery of messages, events and statuses.

    Verification and parsing happen outside any transaction; storing and the
    pipeline run in this process's intake, which commits many webhooks' work
    in one transaction (group commit). The platform gets its answer only after
    that commit, and an answer that makes it retry when the work was not stored.
    Refusals of the request are returned as JSON problems; :class:`NotFound` and
    :class:`ServiceBusy` are raised.
    """

    # Bound only when something is logged: binding up front cost more than verifying the signature.
    def bound() -> Any:
        return log.bind(channel=channel_type.value, account_id=str(account_id))

    # A cached account may be older than the platform's request (rotated credentials) or than
    # the database (deactivated): a refusal or a stale verdict is checked once against a fresh read.
    fresh = False
    while True:
        account, cached = await intake.accounts.get(account_id, fresh=fresh)
        if account is None or account.type != channel_type.value:
            raise NotFound(_NOT_FOUND)
        retry = cached and not fresh
        adapter = runtime(ctx).adapter(account)
        try:
            adapter.verify(webhook)
            events = adapter.parse(webhook)
        except SignatureError as exc:
            if retry:
                fresh = True
                continue
            bound().warning("webhook.bad_signature", detail=exc.message)
            # 401 when the signature is missing altogether, 403 when it is wrong.
            return problem(401 if exc.code == 401 else 403, "SignatureError", exc.message)
        except UnsupportedEventTypeError as exc:
            # Genuine but not for us: answering an error would only make the platform retry for days.
            bound().info("webhook.ignored", detail=exc.message)
            return adapter.acknowledge(webhook, None)
        except MalformedPayloadError as exc:
            if retry:
                fresh = True
                continue
            bound().warning("webhook.malformed", detail=exc.message)
            return problem(400, type(exc).__name__, exc.message)
        responder = Responder.for_webhook(adapter.capabilities.passive_reply)
        try:
            stored = await intake.submit(account, events, webhook.body.decode("utf-8", "replace"), responder)
        except StaleAccount:
            if retry:
                fresh = True
                continue
            raise ServiceBusy("The channel account changed while this webhook was verified; retry") from None
        except AccountGone:
            raise NotFound(_NOT_FOUND) from None
        except Exception as exc:
            # Nothing of it was stored (its savepoint, or its whole group, rolled back); the
            # platform's retry carries the same dedupe keys, so it will be stored once.
            bound().warning("webhook.not_stored", error=f"{type(exc).__name__}: {exc}")
            raise ServiceBusy("The webhook could not be stored; retry") from exc
        break
    if stored.duplicates:
        bound().info("webhook.duplicates", duplicates=stored.duplicates)
    # An automatic answer found in time rides in this very response (WeChat's passive reply).
    return adapter.acknowledge(webhook, responder.message)


# --- the ASGI entry ------------------------------------------------------------------------------


_TARGETS: dict[str, tuple[ChannelType, uuid.UUID] | None] = {}
_TARGETS_LIMIT = 10_000


def webhook_target(scope: Scope) -> tuple[ChannelType, uuid.UUID] | None:
    """The channel type and account id of a webhook path, or None for anything else (FastAPI's to answer)."""
    path: str = scope["path"]
    # The same few accounts' paths arrive over and over; parsing a UUID each time showed in profiles.
    key = f"{scope.get('root_path', '')}|{path}"
    if key in _TARGETS:
        return _TARGETS[key]
    target = _webhook_target(scope)
    if len(_TARGETS) >= _TARGETS_LIMIT:
        _TARGETS.clear()
    _TARGETS[key] = target
    return target


def _webhook_target(scope: Scope) -> tuple[ChannelType, uuid.UUID] | None:
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path):
        path = path[len(root_path) :]
    parts = path.split("/")
    if len(parts) != 5 or parts[0] or parts[1] != "channels" or parts[4] != "webhook":
        return None
    channel_type = _CHANNEL_TYPES.get(parts[2])
    raw_id = parts[3]
    # The canonical forms only; anything else FastAPI validates (and refuses) as before.
    if channel_type is None or not (len(raw_id) == 32 or (len(raw_id) == 36 and raw_id.count("-") == 4)):
        return None
    try:
        return channel_type, uuid.UUID(raw_id)
    except ValueError:
        return None


class _Disconnected(Exception):
    pass


async def _read_body(receive: Receive, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    received = 0
    while True:
        message = await receive()
        if message["type"] == "http.request":
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > max_bytes:
                raise TooLarge()
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
        elif message["type"] == "http.disconnect":
            raise _Disconnected()


def _webhook_request(scope: Scope, body: bytes) -> WebhookRequest:
    return WebhookRequest(
        method=scope["method"],
        query=dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)),
        headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]},
        body=body,
    )


def _content_type(media_type: str) -> bytes:
    # As Starlette's Response: text types say their charset.
    if media_type.startswith("text/") and "charset=" not in media_type.lower():
        media_type += "; charset=utf-8"
    return media_type.encode("latin-1")


class WebhookEdge:
    """Serves the webhook POST with the middlewares' guarantees, for the app it is attached to."""

    def __init__(
        self, *, gate: InflightGate, max_body_bytes: int, intake: Callable[[Context], Intake]
    ) -> None:
        self.gate = gate
        self.max_body_bytes = max_body_bytes
        self.intake = intake

    async def __call__(
        self, ctx: Context, target: tuple[ChannelType, uuid.UUID], scope: Scope, receive: Receive, send: Send
    ) -> None:
        max_bytes = self.max_body_bytes
        if declared_too_large(scope, max_bytes):
            await refuse_too_large(send, max_bytes)
            return
        # What the metrics record: the template once admitted, the status once an answer starts
        # (500 if none did), and whether one did.
        metered: list[Any] = [UNMATCHED, 500, False]
        started = time.perf_counter()
        try:
            await self._admitted(ctx, target, scope, receive, send, metered)
        except TooLarge:
            # Refused while the body streamed in, before any answer started (the body is read whole first).
            await refuse_too_large(send, max_bytes)
        except _Disconnected:
            return  # the platform hung up before its body arrived: nothing stored, no one to answer
        except Exception:
            if not metered[2]:
                await respond(send, 500, b"Internal Server Error", b"text/plain; charset=utf-8")
            raise
        finally:
            record(scope["method"], str(metered[0]), int(metered[1]), time.perf_counter() - started)

    async def _admitted(
        self,
        ctx: Context,
        target: tuple[ChannelType, uuid.UUID],
        scope: Scope,
        receive: Receive,
        send: Send,
        metered: list[Any],
    ) -> None:
        gate = self.gate
        if not gate.enter():
            metered[1:] = [503, True]
            await gate.refuse(send)
            return
        try:
            metered[0] = WEBHOOK_ROUTE
            body = await _read_body(receive, self.max_body_bytes)
            channel_type, account_id = target
            try:
                ack = await process_webhook(
                    ctx, self.intake(ctx), channel_type, account_id, _webhook_request(scope, body)
                )
            except ParleyError as exc:
                headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in exc.headers.items()]
                metered[1:] = [exc.status_code, True]
                await respond(send, exc.status_code, _json(exc.payload()), b"application/json", headers)
                return
            metered[1:] = [ack.status_code, True]
            await respond(send, ack.status_code, ack.body, _content_type(ack.media_type))
        finally:
            gate.leave()


class EdgeApp(FastAPI):
    """FastAPI with the webhook POST answered by :attr:`webhook_edge` before FastAPI's stack.

    The edge needs ``app.state.ctx``, which the lifespan sets.
    """

    webhook_edge: WebhookEdge | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        edge = self.webhook_edge
        if edge is not None and scope["type"] == "http" and scope["method"] == "POST":
            target = webhook_target(scope)
            if target is not None:
                await edge(self.state.ctx, target, scope, receive, send)
                return
        await super().__call__(scope, receive, send)
