"""Shared by the WeChat adapter and simulator tests: accounts, a token store, live servers, a receiver."""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request, Response

from parley.channels.base import (
    AccountContext,
    ChannelError,
    InboundEvent,
    MalformedPayloadError,
    OutboundMessage,
    SignatureError,
    WebhookRequest,
)
from parley.channels.wechat.adapter import WeChatAdapter
from parley.sandbox.wechat.app import create_app

PAYLOADS = Path(__file__).parent / "payloads"
VECTORS = json.loads((PAYLOADS / "crypto_test_values.json").read_text())

AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
TOKEN = "parleyToken42"
SECRET = "0123456789abcdef0123456789abcdef"


def new_app_id() -> str:
    return "wx" + secrets.token_hex(8)


class MemoryTokenStore:
    def __init__(self) -> None:
        self.values: dict[tuple[str, str], tuple[str, datetime]] = {}
        self.puts = 0

    async def get(self, account_id: str, kind: str) -> tuple[str, datetime] | None:
        return self.values.get((account_id, kind))

    async def put(self, account_id: str, kind: str, value: str, expires_at: datetime) -> None:
        self.puts += 1
        self.values[(account_id, kind)] = (value, expires_at)


def context(
    app_id: str,
    *,
    mode: str = "plain",
    base_url: str = "https://api.weixin.qq.com",
    account_id: str | None = None,
    token: str = TOKEN,
    aes_key: str | None = AES_KEY,
    secret: str = SECRET,
    original_id: str | None = None,
) -> AccountContext:
    secrets_: dict[str, str] = {"app_secret": secret, "token": token}
    if aes_key:
        secrets_["encoding_aes_key"] = aes_key
    return AccountContext(
        account_id=account_id or str(secrets.token_hex(16)),
        external_id=app_id,
        api_base_url=base_url,
        config={"app_id": app_id, "encryption_mode": mode, "original_id": original_id},
        secrets=secrets_,
    )


def adapter_for(ctx: AccountContext, http: httpx.AsyncClient | None = None) -> WeChatAdapter:
    return WeChatAdapter(ctx, http or httpx.AsyncClient(), MemoryTokenStore())


def webhook(query: dict[str, str], body: bytes | str = b"", method: str = "POST") -> WebhookRequest:
    raw = body.encode() if isinstance(body, str) else body
    return WebhookRequest(method=method, query=query, headers={"content-type": "text/xml"}, body=raw)


# --- live servers -------------------------------------------------------------------------------


class LiveServer:
    """An ASGI app served by uvicorn on a free local port, in the test's event loop."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(
            uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False)
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(sockets=[self._sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task


@dataclass
class Receiver:
    """A stand-in for Parley's webhook endpoint, built on the real adapter."""

    adapter: WeChatAdapter | None = None
    fail_first: int = 0
    slow_first: int = 0
    slow_s: float = 1.0
    reply: Callable[[InboundEvent], OutboundMessage | None] | None = None
    hits: list[dict[str, Any]] = field(default_factory=list)
    events: dict[str, InboundEvent] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def reset(self, adapter: WeChatAdapter | None = None) -> None:
        self.adapter = adapter
        self.fail_first = self.slow_first = 0
        self.reply = None
        self.hits.clear()
        self.events.clear()
        self.errors.clear()

    def build(self) -> FastAPI:
        app = FastAPI()

        @app.get("/wx")
        async def handshake(request: Request) -> Response:
            assert self.adapter is not None
            try:
                ack = self.adapter.handshake(webhook(dict(request.query_params), method="GET"))
            except SignatureError:
                return Response(status_code=403)
            return Response(ack.body, media_type=ack.media_type)

        @app.post("/wx")
        async def push(request: Request) -> Response:
            assert self.adapter is not None
            body = await request.body()
            query = dict(request.query_params)
            self.hits.append({"query": query, "body": body})
            attempt = len(self.hits)
            if attempt <= self.fail_first:
                return Response("boom", status_code=500)
            if attempt <= self.fail_first + self.slow_first:
                await asyncio.sleep(self.slow_s)
            req = webhook(query, body)
            try:
                self.adapter.verify(req)
                events = self.adapter.parse(req)
            except SignatureError as exc:
                self.errors.append(f"signature: {exc}")
                return Response(status_code=403)
            except (MalformedPayloadError, ChannelError) as exc:
                self.errors.append(f"malformed: {exc}")
                return Response(status_code=400)
            for event in events:
                self.events.setdefault(event.dedupe_key, event)
            message = self.reply(events[0]) if self.reply else None
            ack = self.adapter.acknowledge(req, message)
            return Response(ack.body, media_type=ack.media_type)

        return app


# --- fixtures (imported by the conftest files) ----------------------------------------------------


@pytest.fixture(scope="session")
async def simulator_server() -> AsyncIterator[LiveServer]:
    server = LiveServer(create_app())
    await server.start()
    yield server
    await server.stop()


@pytest.fixture(scope="session")
async def receiver_server() -> AsyncIterator[tuple[LiveServer, Receiver]]:
    receiver = Receiver()
    server = LiveServer(receiver.build())
    await server.start()
    yield server, receiver
    await server.stop()


@pytest.fixture
async def sim(simulator_server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on a freshly reset simulator."""
    async with httpx.AsyncClient(base_url=simulator_server.url, timeout=30) as http:
        response = await http.post("/_sandbox/reset")
        assert response.status_code == 204
        yield http


@pytest.fixture
def receiver(receiver_server: tuple[LiveServer, Receiver]) -> Receiver:
    _server, rec = receiver_server
    rec.reset()
    return rec


@pytest.fixture
def receiver_url(receiver_server: tuple[LiveServer, Receiver]) -> str:
    return receiver_server[0].url + "/wx"


async def register(
    sim: httpx.AsyncClient,
    *,
    mode: str = "plain",
    webhook_url: str | None = None,
    app_id: str | None = None,
    original_id: str | None = None,
) -> AccountContext:
    """Registers an account with the simulator and returns the context an adapter for it gets."""
    app_id = app_id or new_app_id()
    original_id = original_id or "gh_" + secrets.token_hex(6)
    response = await sim.post(
        "/_sandbox/accounts",
        json={
            "app_id": app_id,
            "app_secret": SECRET,
            "token": TOKEN,
            "encoding_aes_key": AES_KEY,
            "encryption_mode": mode,
            "original_id": original_id,
            "webhook_url": webhook_url,
        },
    )
    assert response.status_code == 200, response.text
    return context(app_id, mode=mode, base_url=str(sim.base_url).rstrip("/"), original_id=original_id)


async def add_user(sim: httpx.AsyncClient, app_id: str, **fields: Any) -> dict[str, Any]:
    response = await sim.post(f"/_sandbox/accounts/{app_id}/users", json={"nickname": "小明", **fields})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def act(sim: httpx.AsyncClient, app_id: str, openid: str, **action: Any) -> dict[str, Any]:
    response = await sim.post(f"/_sandbox/accounts/{app_id}/users/{openid}/actions", json=action)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result
