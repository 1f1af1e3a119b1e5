"""Run an ASGI app on a real local port in a background thread (tests, benchmarks, the demo).

The simulator must speak real HTTP to Parley and back, so both ends run under
uvicorn; a thread keeps each server's event loop independent of the caller's.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, Request, Response

from parley.channels.base import (
    AccountContext,
    InboundEvent,
    MalformedPayloadError,
    SignatureError,
    WebhookRequest,
)
from parley.channels.whatsapp.adapter import WhatsAppAdapter


@contextmanager
def serve(app: Any, *, host: str = "127.0.0.1", start_timeout_s: float = 10.0) -> Iterator[str]:
    """Serves ``app`` on a free port until the block exits; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=start_timeout_s)
        sock.close()


class _NoTokens:
    """WhatsApp system-user tokens live in the account secrets; nothing is cached."""

    async def get(self, account_id: str, kind: str) -> tuple[str, datetime] | None:
        return None

    async def put(self, account_id: str, kind: str, value: str, expires_at: datetime) -> None:
        return None


class WebhookReceiver:
    """A stand-in for Parley's webhook endpoint built on :class:`WhatsAppAdapter`.

    It answers the GET challenge, verifies and parses every POST, keeps the
    events (deduplicated as Parley's store would) and can be told to fail the
    next POSTs to exercise the platform's retries.
    """

    def __init__(self, *, app_secret: str, verify_token: str, phone_number_id: str = "1") -> None:
        self.app_secret = app_secret
        self.verify_token = verify_token
        self.phone_number_id = phone_number_id
        self.url = ""
        self.fail_next = 0
        self.fail_status = 500
        self.requests: list[dict[str, Any]] = []
        self.events: list[InboundEvent] = []
        self.dedupe_keys: set[str] = set()
        self._lock = threading.Lock()

    def reset(self, *, app_secret: str | None = None, verify_token: str | None = None) -> None:
        with self._lock:
            self.app_secret = app_secret or self.app_secret
            self.verify_token = verify_token or self.verify_token
            self.fail_next = 0
            self.fail_status = 500
            self.requests.clear()
            self.events.clear()
            self.dedupe_keys.clear()

    def adapter(self, http: httpx.AsyncClient) -> WhatsAppAdapter:
        context = AccountContext(
            account_id="receiver",
            external_id=self.phone_number_id,
            api_base_url="http://unused.invalid",
            config={"phone_number_id": self.phone_number_id, "business_account_id": "1"},
            secrets={
                "access_token": "unused",
                "app_secret": self.app_secret,
                "verify_token": self.verify_token,
            },
        )
        return WhatsAppAdapter(context, http, _NoTokens())

    def app(self) -> FastAPI:
        app = FastAPI()
        http = httpx.AsyncClient()

        def webhook_request(request: Request, body: bytes) -> WebhookRequest:
            return WebhookRequest(
                method=request.method,
                query=dict(request.query_params),
                headers={k.lower(): v for k, v in request.headers.items()},
                body=body,
            )

        @app.get("/webhook")
        async def challenge(request: Request) -> Response:
            try:
                ack = self.adapter(http).handshake(webhook_request(request, b""))
            except SignatureError:
                return Response("forbidden", status_code=403)
            except MalformedPayloadError:
                return Response("bad request", status_code=400)
            return Response(ack.body, status_code=ack.status_code, media_type=ack.media_type)

        @app.post("/webhook")
        async def receive(request: Request) -> Response:
            body = await request.body()
            wrapped = webhook_request(request, body)
            record: dict[str, Any] = {"headers": dict(wrapped.headers), "body": body}
            with self._lock:
                self.requests.append(record)
                if self.fail_next > 0:
                    self.fail_next -= 1
                    record["answer"] = self.fail_status
                    return Response("try again", status_code=self.fail_status)
            adapter = self.adapter(http)
            try:
                adapter.verify(wrapped)
                events = adapter.parse(wrapped)
            except SignatureError as exc:
                record["answer"] = 401 if exc.code == 401 else 403
                return Response(exc.message, status_code=record["answer"])
            except MalformedPayloadError as exc:
                record["answer"] = 400
                return Response(exc.message, status_code=400)
            with self._lock:
                for event in events:
                    if event.dedupe_key not in self.dedupe_keys:
                        self.dedupe_keys.add(event.dedupe_key)
                        self.events.append(event)
                record["answer"] = 200
            ack = adapter.acknowledge(wrapped)
            return Response(ack.body, status_code=ack.status_code, media_type=ack.media_type)

        return app


@contextmanager
def serve_receiver(*, app_secret: str, verify_token: str, phone_number_id: str) -> Iterator[WebhookReceiver]:
    """A :class:`WebhookReceiver` on a real local port; its ``url`` is the webhook address to register."""
    receiver = WebhookReceiver(
        app_secret=app_secret, verify_token=verify_token, phone_number_id=phone_number_id
    )
    with serve(receiver.app()) as url:
        receiver.url = url + "/webhook"
        yield receiver


async def seed_account(
    client: httpx.AsyncClient,
    receiver: WebhookReceiver,
    *,
    business_account_id: str,
    phone_numbers: list[dict[str, str]],
    access_token: str,
    app_secret: str,
    verify_token: str,
    users: list[dict[str, Any]],
    limits: dict[str, Any],
) -> None:
    """Empties the simulator and the receiver (secrets a test changed included) and creates one
    business account sending its webhooks to ``receiver``."""
    receiver.reset(app_secret=app_secret, verify_token=verify_token)
    (await client.post("/_sandbox/reset")).raise_for_status()
    response = await client.post(
        "/_sandbox/accounts",
        json={
            "business_account_id": business_account_id,
            "phone_numbers": phone_numbers,
            "access_token": access_token,
            "app_secret": app_secret,
            "verify_token": verify_token,
            "webhook_url": receiver.url,
        },
    )
    response.raise_for_status()
    (await client.post(f"/_sandbox/accounts/{business_account_id}/limits", json=limits)).raise_for_status()
    for user in users:
        (await client.post(f"/_sandbox/accounts/{business_account_id}/users", json=user)).raise_for_status()
