"""``parley bench inbound``: signed WeChat webhooks from many simulated users against a running server.

Default: the whole pipeline, from the webhook POST to the ``message.created``
event at a connected agent websocket. ``--ceiling``: the same load against a
minimal handler that only verifies, parses and inserts one row, the ceiling on
this machine. ``--compare`` runs both and reports the ratio.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import urlencode

import aiohttp
import httpx
import orjson
import typer
from yarl import URL

from parley.bench.support import (
    BENCH_SECRET,
    Process,
    Workspace,
    cpu_seconds,
    free_port,
    percentile,
    workspace,
)
from parley.channels.wechat.crypto import MessageCrypto, sha1_signature
from parley.cli import bench_app

APP_ID = "wx0123456789abcdef"
TOKEN = "benchtoken"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
ORIGINAL_ID = "gh_bench00000001"
AGENT_EMAIL = "bench-agent@parley.bench"
AGENT_PASSWORD = "bench-agent-password"
_SOCKET_ENDED = (
    aiohttp.WSMsgType.CLOSE,
    aiohttp.WSMsgType.CLOSING,
    aiohttp.WSMsgType.CLOSED,
    aiohttp.WSMsgType.ERROR,
)


@dataclass
class Result:
    sent: int = 0
    ok: int = 0
    errors: int = 0
    http_ms: list[float] = field(default_factory=list)
    e2e_ms: list[float] = field(default_factory=list)
    started: float = 0.0
    finished: float = 0.0
    server_cpu_s: float | None = None
    server_loop_cpu_s: float | None = None
    loadgen_cpu_s: float | None = None


async def create_bench_account(session: Any, ctx: Any) -> Any:
    """The benches' WeChat account in safe mode, whose credentials the load generators sign and encrypt with."""
    from parley.channels.schemas import ChannelAccountCreate
    from parley.channels.service import channel_account

    return await channel_account.create(
        session,
        actor=None,
        box=ctx.secret_box,
        data=ChannelAccountCreate(
            type="wechat",
            name="Bench",
            api_base_url="http://127.0.0.1:9",
            credentials={
                "app_id": APP_ID,
                "app_secret": "benchsecret0123456789abcdef012345",
                "token": TOKEN,
                "encoding_aes_key": AES_KEY,
                "encryption_mode": "safe",
                "original_id": ORIGINAL_ID,
            },
        ),
    )


async def _setup(ws: Workspace) -> str:
    """Migrates the bench database, creates an agent and a WeChat account in safe mode; returns the account id."""
    from parley.auth import service as auth_service
    from parley.auth.schemas import UserCreate
    from parley.config import Environment, Settings
    from parley.context import build_context
    from parley.db import session_scope
    from parley.migrate import upgrade_async

    await upgrade_async(ws.database_url)
    settings = Settings(
        env=Environment.testing, database_url=ws.database_url, data_dir=ws.directory, secret_key=BENCH_SECRET
    )
    ctx = build_context(settings)
    try:
        async with session_scope(ctx.sessionmaker) as session:
            await auth_service.role.ensure_builtin(session)
            await auth_service.user.create(
                session,
                actor=None,
                data=UserCreate(email=AGENT_EMAIL, name="Bench Agent", password=AGENT_PASSWORD, role="agent"),
            )
            account = await create_bench_account(session, ctx)
            return str(account.id)
    finally:
        await ctx.close()


def _payload(crypto: MessageCrypto, openid: str, text: str, msg_id: int) -> tuple[dict[str, str], bytes]:
    now = str(int(time.time()))
    plain = (
        f"<xml><ToUserName><![CDATA[{ORIGINAL_ID}]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{now}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{text}]]></Content>"
        f"<MsgId>{msg_id}</MsgId></xml>"
    ).encode()
    encrypt = crypto.encrypt(plain)
    nonce = secrets.token_hex(5)
    query = {
        "signature": sha1_signature(TOKEN, now, nonce),
        "timestamp": now,
        "nonce": nonce,
        "openid": openid,
        "encrypt_type": "aes",
        "msg_signature": crypto.sign(now, nonce, encrypt),
    }
    body = f"<xml><ToUserName><![CDATA[{ORIGINAL_ID}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>".encode()
    return query, body


def _request(url: str, query: dict[str, str]) -> URL:
    """The webhook URL with its query string, encoded once while payloads are prepared, not per request."""
    return URL(f"{url}?{urlencode(query)}", encoded=True)


async def _login(base: str) -> str:
    """Logs the bench agent in through the form (outside the measured run); returns the session cookie."""
    async with httpx.AsyncClient(base_url=base) as client:
        page = await client.get("/login")
        match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        if match is None:
            raise RuntimeError("login form not found")
        response = await client.post(
            "/login", data={"email": AGENT_EMAIL, "password": AGENT_PASSWORD, "csrf_token": match.group(1)}
        )
        return str(response.cookies["parley_session"])


def _created_marker(raw: str, prefix: str, marks: dict[str, float]) -> str | None:
    """The marker of a ``message.created`` event whose message text is one of ``marks``, else None.

    Only frames that contain both ``"message.created"`` and this run's marker prefix (``prefix``, e.g.
    ``bench-1a2b3c-``) are decoded; every other frame (``conversation.opened``, ``contact.created``,
    other runs' events) is skipped after two substring searches, which cannot miss one that counts: the
    event type and the marker are plain ASCII that JSON writes unescaped, whatever its separators. A
    decoded frame still counts only on its ``type`` and ``message.text``, so the substring test can
    never count a wrong one.
    """
    if '"message.created"' not in raw or prefix not in raw:
        return None
    event = orjson.loads(raw)
    if event.get("type") != "message.created":
        return None
    message = event.get("message")
    text = message.get("text") if isinstance(message, dict) else None
    return text if isinstance(text, str) and text in marks else None


async def _agent_socket(
    base: str, marks: dict[str, float], arrived: dict[str, float], prefix: str
) -> tuple[asyncio.Task[None], asyncio.Event]:
    """An agent websocket recording when each of this run's ``message.created`` events arrives.

    The arrival time is taken as soon as a frame is received, before any decoding; which frames count
    is :func:`_created_marker`'s.
    """
    cookie = await _login(base)
    ready = asyncio.Event()

    async def listen() -> None:
        async with (
            aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session,
            session.ws_connect(
                base.replace("http", "ws", 1) + "/ws",
                headers={"Cookie": f"parley_session={cookie}"},
            ) as socket,
        ):
            while True:
                message = await socket.receive()
                at = time.perf_counter()
                if message.type is not aiohttp.WSMsgType.TEXT:
                    if message.type in _SOCKET_ENDED:
                        return
                    continue
                raw: str = message.data
                if not ready.is_set():
                    if orjson.loads(raw).get("type") == "hello":
                        ready.set()
                    continue
                text = _created_marker(raw, prefix, marks)
                if text is not None:
                    arrived[text] = at

    task = asyncio.create_task(listen())
    await asyncio.wait_for(ready.wait(), 10)
    return task, ready


async def _load(
    url: str, *, messages: int, users: int, concurrency: int, rate: float | None, with_socket: bool, base: str
) -> Result:
    crypto = MessageCrypto(TOKEN, AES_KEY, APP_ID)
    result = Result()
    marks: dict[str, float] = {}
    arrived: dict[str, float] = {}
    run = uuid.uuid4().hex[:6]
    socket_task = None
    if with_socket:
        socket_task, _ready = await _agent_socket(base, marks, arrived, f"bench-{run}-")
    # Distinct MsgIds per run: a repeated MsgId is a platform retry and (rightly) stored only once.
    first_msg_id = 10**15 + secrets.randbelow(10**15)
    # Everything a request needs is built here, before the clock starts: the URL with its encoded
    # query string, the body bytes and the headers, so the measured loop only sends.
    texts: list[str] = []
    requests: list[tuple[URL, bytes]] = []
    for n in range(messages):
        text = f"bench-{run}-{n}"
        marks[text] = 0.0
        query, body = _payload(crypto, f"o{run}user{n % users:06d}", text, first_msg_id + n)
        texts.append(text)
        requests.append((_request(url, query), body))
    headers = {"Content-Type": "text/xml"}
    # The prepared requests and marks are tens of thousands of objects that live for the whole run:
    # frozen, a full collection does not walk them, which had paused this process for 100-200 ms
    # at a time and added those pauses to the latencies it measures.
    gc.collect()
    gc.freeze()
    # One aiohttp session straight on the socket (no httpx on top, no cookie jar): the load generator
    # shares this machine's two cores with the server it measures, so its own CPU per request counts.
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Accept-Encoding"),
    ) as client:
        post = client.post
        http_ms = result.http_ms
        perf_counter = time.perf_counter
        cursor = iter(range(messages))
        cpu_started = time.process_time()
        result.started = started = perf_counter()

        async def worker() -> None:
            for n in cursor:
                if rate:
                    # Open-loop pacing: request n is due at start + n / rate, however slow earlier ones were.
                    delay = started + n / rate - perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                target, body = requests[n]
                t0 = perf_counter()
                marks[texts[n]] = t0
                result.sent += 1
                try:
                    async with post(target, data=body, headers=headers) as response:
                        await response.read()
                        status = response.status
                except (aiohttp.ClientError, TimeoutError):
                    # Not retried: a lost request is an error, as a platform would see it.
                    result.errors += 1
                    continue
                http_ms.append((perf_counter() - t0) * 1000)
                if status == 200:
                    result.ok += 1
                else:
                    result.errors += 1

        workers = concurrency if not rate else max(concurrency, int(rate // 5) or 1)
        await asyncio.gather(*(worker() for _ in range(workers)))
        result.finished = perf_counter()
    if socket_task is not None:
        deadline = time.perf_counter() + 15
        while len(arrived) < result.ok and time.perf_counter() < deadline:  # noqa: ASYNC110  (polling a dict filled by another task)
            await asyncio.sleep(0.05)
        socket_task.cancel()
        result.e2e_ms = [(arrived[text] - marks[text]) * 1000 for text in arrived]
        result.finished = max([result.finished, *arrived.values()])
    # The load generator's own CPU over the measured run (posting and, in pipeline mode, reading the
    # websocket until the last event), not the payload preparation before it.
    result.loadgen_cpu_s = time.process_time() - cpu_started
    gc.unfreeze()
    return result


def _summary(result: Result, *, mode: str) -> dict[str, Any]:
    elapsed = max(result.finished - result.started, 1e-9)
    latencies = result.e2e_ms if mode == "pipeline" else result.http_ms
    return {
        "mode": mode,
        "messages": result.sent,
        "ok": result.ok,
        "errors": result.errors,
        "delivered_to_websocket": len(result.e2e_ms) if mode == "pipeline" else None,
        "rate_per_s": round(result.ok / elapsed, 1),
        "p50_ms": round(percentile(latencies, 50), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "http_p50_ms": round(percentile(result.http_ms, 50), 2),
        "http_p99_ms": round(percentile(result.http_ms, 99), 2),
        # The server's own CPU per message over the measured run: unlike the rate, it hardly depends
        # on what else this machine is running.
        "server_cpu_ms_per_msg": round(result.server_cpu_s * 1000 / result.ok, 3)
        if result.server_cpu_s is not None and result.ok
        else None,
        # The event loop's thread alone: one core's worth of it is the server's ceiling.
        "server_loop_cpu_ms_per_msg": round(result.server_loop_cpu_s * 1000 / result.ok, 3)
        if result.server_loop_cpu_s is not None and result.ok
        else None,
        # This process's CPU per message sent over the same run: the load generator shares the machine,
        # so it has to stay well below the server's figure to not be what limits the rate.
        "loadgen_cpu_ms_per_msg": round(result.loadgen_cpu_s * 1000 / result.sent, 3)
        if result.loadgen_cpu_s is not None and result.sent
        else None,
    }


def _run(
    mode: str, *, messages: int, users: int, concurrency: int, rate: float | None, database_url: str | None
) -> dict[str, Any]:
    with workspace(database_url) as ws:
        account_id = asyncio.run(_setup(ws))
        port = free_port()
        if mode == "ceiling":
            args = ["parley.bench.ceiling", "--port", str(port)]
        else:
            args = ["parley", "serve", "--port", str(port), "--no-workers"]
        with Process(args, ws.env(), ws.directory / f"{mode}.log", port).start() as server:
            base = f"http://127.0.0.1:{port}"
            url = f"{base}/channels/wechat/{account_id}/webhook"
            # A short warm-up so first-request costs (imports, connection pools) don't count.
            asyncio.run(
                _load(
                    url,
                    messages=min(200, messages),
                    users=users,
                    concurrency=concurrency,
                    rate=None,
                    with_socket=False,
                    base=base,
                )
            )
            pid = server.proc.pid if server.proc else 0
            cpu_before, loop_before = cpu_seconds(pid), cpu_seconds(pid, main_thread=True)
            result = asyncio.run(
                _load(
                    url,
                    messages=messages,
                    users=users,
                    concurrency=concurrency,
                    rate=rate,
                    with_socket=mode == "pipeline",
                    base=base,
                )
            )
            cpu_after, loop_after = cpu_seconds(pid), cpu_seconds(pid, main_thread=True)
            if loop_before is not None and loop_after is not None:
                result.server_loop_cpu_s = loop_after - loop_before
            if cpu_before is not None and cpu_after is not None:
                result.server_cpu_s = cpu_after - cpu_before
        return _summary(result, mode=mode)


@bench_app.command("inbound")
def bench_inbound(
    messages: Annotated[int, typer.Option(help="Webhooks to post")] = 5000,
    users: Annotated[int, typer.Option(help="Distinct simulated customers")] = 1000,
    concurrency: Annotated[
        int,
        typer.Option(
            help="Requests in flight (at 1,000 messages/s and about 100 ms per answer, a platform keeps about 100 open)"
        ),
    ] = 128,
    rate: Annotated[
        float | None, typer.Option(help="Fixed arrival rate per second (default: as fast as it goes)")
    ] = None,
    ceiling: Annotated[
        bool, typer.Option("--ceiling", help="Only the minimal verify+parse+insert handler")
    ] = False,
    compare: Annotated[
        bool, typer.Option("--compare", help="Run the pipeline and the ceiling, report both")
    ] = False,
    database_url: Annotated[
        str | None, typer.Option(help="Use this database instead of a temporary SQLite file")
    ] = None,
) -> None:
    """Measure inbound throughput and webhook-to-websocket latency."""
    options: dict[str, Any] = {
        "messages": messages,
        "users": users,
        "concurrency": concurrency,
        "rate": rate,
        "database_url": database_url,
    }
    if compare:
        pipeline = _run("pipeline", **options)
        limit = _run("ceiling", **options)
        print(json.dumps(pipeline))
        print(json.dumps(limit))
        summary = {
            "rate_per_s": pipeline["rate_per_s"],
            "p50_ms": pipeline["p50_ms"],
            "p99_ms": pipeline["p99_ms"],
            "ceiling_rate_per_s": limit["rate_per_s"],
            "server_cpu_ms_per_msg": pipeline["server_cpu_ms_per_msg"],
            "ceiling_server_cpu_ms_per_msg": limit["server_cpu_ms_per_msg"],
            "server_loop_cpu_ms_per_msg": pipeline["server_loop_cpu_ms_per_msg"],
            "ceiling_server_loop_cpu_ms_per_msg": limit["server_loop_cpu_ms_per_msg"],
            "loadgen_cpu_ms_per_msg": pipeline["loadgen_cpu_ms_per_msg"],
            "share_of_ceiling": round(pipeline["rate_per_s"] / limit["rate_per_s"], 3)
            if limit["rate_per_s"]
            else None,
            "cpus": os.cpu_count(),
        }
        print(json.dumps(summary))
        return
    print(json.dumps(_run("ceiling" if ceiling else "pipeline", **options)))
