"""``parley bench inbound``'s load generator against a stand-in server: what it posts and what it counts."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import orjson
import pytest
from aiohttp import web

from parley.bench import inbound
from parley.bench.support import free_port
from parley.channels.wechat.crypto import MessageCrypto, sha1_signature, signature_matches

CONTENT = re.compile(rb"<Content><!\[CDATA\[(.*?)\]\]></Content>")
ENCRYPT = re.compile(r"<Encrypt><!\[CDATA\[(.*?)\]\]></Encrypt>")


@dataclass
class StandIn:
    """A webhook that checks what a WeChat server would, and an agent websocket fed with the pipeline's frames."""

    base: str
    url: str
    texts: list[str] = field(default_factory=list)
    rejected: int = 0
    sockets: list[web.WebSocketResponse] = field(default_factory=list)
    fail_every: int = 0


@pytest.fixture
async def stand_in() -> AsyncIterator[StandIn]:
    crypto = MessageCrypto(inbound.TOKEN, inbound.AES_KEY, inbound.APP_ID)
    port = free_port()
    state = StandIn(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}/channels/wechat/acc/webhook")

    async def login_form(request: web.Request) -> web.Response:
        return web.Response(
            text='<form><input name="csrf_token" value="tok"></form>', content_type="text/html"
        )

    async def login(request: web.Request) -> web.Response:
        form = await request.post()
        assert (form["email"], form["password"], form["csrf_token"]) == (
            inbound.AGENT_EMAIL,
            inbound.AGENT_PASSWORD,
            "tok",
        )
        response = web.Response(status=303, headers={"Location": "/inbox"})
        response.set_cookie("parley_session", "agent-session")
        return response

    async def socket(request: web.Request) -> web.WebSocketResponse:
        assert request.cookies.get("parley_session") == "agent-session"
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str('{"type": "hello", "node": "n"}')
        state.sockets.append(ws)
        async for _ in ws:
            pass
        return ws

    async def webhook(request: web.Request) -> web.Response:
        q = request.query
        body = await request.text()
        encrypt = ENCRYPT.search(body)
        if (
            request.content_type != "text/xml"
            or encrypt is None
            or q["encrypt_type"] != "aes"
            or not signature_matches(
                sha1_signature(inbound.TOKEN, q["timestamp"], q["nonce"]), q["signature"]
            )
            or not crypto.check(q["timestamp"], q["nonce"], encrypt.group(1), q["msg_signature"])
        ):
            state.rejected += 1
            return web.Response(status=403)
        content = CONTENT.search(crypto.decrypt(encrypt.group(1)))
        assert content is not None
        text = content.group(1).decode()
        state.texts.append(text)
        if state.fail_every and len(state.texts) % state.fail_every == 0:
            return web.Response(status=503)
        other_run = re.sub(r"^bench-[0-9a-f]+-", "bench-ffffff-", text)
        frames = [
            # Carry this run's marker without being its message.created: never counted.
            {"type": "conversation.opened", "conversation": {"last_message_preview": text}},
            {"type": "message.updated", "message": {"text": text}, "note": "message.created"},
            {"type": "contact.created", "contact": {"name": text}},
            # Another run's marker in a message.created: not counted either.
            {"type": "message.created", "message": {"text": other_run}},
            {
                "type": "message.created",
                "message": {"text": text},
                "conversation": {"last_message_preview": text},
            },
        ]
        for ws in state.sockets:
            for frame in frames:
                await ws.send_str(orjson.dumps(frame).decode())
        return web.Response(text="success")

    app = web.Application()
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login)
    app.router.add_get("/ws", socket)
    app.router.add_post("/channels/wechat/acc/webhook", webhook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield state
    finally:
        for ws in state.sockets:
            await ws.close()
        await runner.cleanup()


async def test_closed_loop_posts_signed_webhooks_and_counts_this_runs_message_created(
    stand_in: StandIn,
) -> None:
    stand_in.fail_every = 5
    result = await inbound._load(
        stand_in.url, messages=60, users=7, concurrency=4, rate=None, with_socket=True, base=stand_in.base
    )
    assert stand_in.rejected == 0
    assert len(stand_in.texts) == len(set(stand_in.texts)) == 60
    assert (result.sent, result.ok, result.errors) == (60, 48, 12)
    assert len(result.http_ms) == 60
    # Every ok message's event arrived once; the failed ones' events were never sent.
    assert len(result.e2e_ms) == 48
    assert all(ms >= 0 for ms in result.e2e_ms)
    assert result.loadgen_cpu_s is not None and result.loadgen_cpu_s > 0
    summary = inbound._summary(result, mode="pipeline")
    assert summary["delivered_to_websocket"] == 48
    assert summary["loadgen_cpu_ms_per_msg"] > 0


async def test_open_loop_keeps_the_schedule(stand_in: StandIn) -> None:
    result = await inbound._load(
        stand_in.url, messages=30, users=30, concurrency=2, rate=200, with_socket=False, base=stand_in.base
    )
    assert (result.sent, result.ok, result.errors) == (30, 30, 0)
    # Request 29 is due 145 ms after the start.
    assert result.finished - result.started >= 29 / 200
    assert result.e2e_ms == []


async def test_connection_errors_are_counted_not_retried() -> None:
    url = f"http://127.0.0.1:{free_port()}/channels/wechat/acc/webhook"
    result = await inbound._load(
        url, messages=5, users=5, concurrency=2, rate=None, with_socket=False, base=""
    )
    assert (result.sent, result.ok, result.errors) == (5, 0, 5)
    assert result.http_ms == []


def test_only_this_runs_message_created_counts() -> None:
    marks = {"bench-1a2b3c-0": 0.0, "bench-1a2b3c-1": 0.0}
    prefix = "bench-1a2b3c-"

    def frame(event: object) -> str:
        return orjson.dumps(event).decode()

    created = {"type": "message.created", "message": {"text": "bench-1a2b3c-1"}}
    assert inbound._created_marker(frame(created), prefix, marks) == "bench-1a2b3c-1"
    # The server's own serialization (json.dumps, spaces after separators) and key order do not matter.
    spaced = '{"conversation": {"last_message_preview": "x"}, "message": {"text": "bench-1a2b3c-0"}, "type": "message.created"}'
    assert inbound._created_marker(spaced, prefix, marks) == "bench-1a2b3c-0"
    for event in [
        {"type": "conversation.opened", "conversation": {"last_message_preview": "bench-1a2b3c-1"}},
        {"type": "message.updated", "message": {"text": "bench-1a2b3c-1"}, "note": "message.created"},
        {"type": "message.created", "message": {"text": "bench-ffffff-1"}},
        {"type": "message.created", "message": {"text": "bench-1a2b3c-2"}},
        {"type": "message.created", "message": {"text": "other"}, "conversation": {"x": "bench-1a2b3c-1"}},
        {"type": "message.created", "message": None, "note": "bench-1a2b3c-1"},
        {"type": "message.created", "message": {"text": ["bench-1a2b3c-1"]}},
        {"type": "hello", "node": "bench-1a2b3c-1"},
    ]:
        assert inbound._created_marker(frame(event), prefix, marks) is None, event
