"""``create_app()``: the WeChat platform simulator as one FastAPI app.

* the platform's API at its real paths (``/cgi-bin/…``, ``/sns/…``, ``/connect/oauth2/authorize``);
* the control API under ``/_sandbox/`` (accounts, users, user actions, limits, record, stats, clock);
* ``GET /``: a phone page where a person plays a follower.

Point a channel account's ``api_base_url`` at this server and register the
account here with Parley's webhook URL; the simulator then signs, encrypts and
pushes what its users do, with the platform's retries, and records what Parley sends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from importlib.resources import files
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from parley.channels.wechat.xml import build_xml
from parley.sandbox.wechat import api, control
from parley.sandbox.wechat.push import deliver
from parley.sandbox.wechat.state import HttpFault, Platform, SimAccount, WxError

_PACKAGE = files("parley.sandbox.wechat")


def create_app(*, webhook_http: httpx.AsyncClient | None = None) -> FastAPI:
    """The simulator. ``webhook_http`` is the client pushes go out on (tests may pass one on an ASGI transport)."""
    tasks: set[asyncio.Task[Any]] = set()
    owned: list[httpx.AsyncClient] = []

    def http() -> httpx.AsyncClient:
        if webhook_http is not None:
            return webhook_http
        if not owned:
            owned.append(httpx.AsyncClient(follow_redirects=False))
        return owned[0]

    def spawn(coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client in owned:
            await client.aclose()

    app = FastAPI(
        title="WeChat platform simulator", lifespan=lifespan, docs_url="/_sandbox/docs", redoc_url=None
    )
    app.state.platform = Platform()
    app.state.webhook_http = http
    app.state.spawn = spawn
    app.state.schedule_push = _push_scheduler(app, http, spawn)

    @app.exception_handler(WxError)
    async def wx_error(request: Request, exc: WxError) -> JSONResponse:
        platform: Platform = request.app.state.platform
        platform.stats_errors[exc.errcode] += 1
        call = getattr(request.state, "call", None)
        if call is not None:
            call["errcode"] = exc.errcode
        rid = f"{platform.seq():x}-{int(platform.now()):x}"
        return JSONResponse({"errcode": exc.errcode, "errmsg": f"{exc.errmsg} rid: {rid}", **exc.extra})

    @app.exception_handler(HttpFault)
    async def http_fault(request: Request, exc: HttpFault) -> Response:
        call = getattr(request.state, "call", None)
        if call is not None:
            call["errcode"] = f"http {exc.status}"
        return Response(
            "<html><body>502 Bad Gateway</body></html>", status_code=exc.status, media_type="text/html"
        )

    app.include_router(api.router)
    app.include_router(control.router)
    app.mount(
        "/_sandbox/static", StaticFiles(directory=str(_PACKAGE / "static")), name="wechat-sandbox-static"
    )

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def phone_page() -> HTMLResponse:
        return HTMLResponse((_PACKAGE / "templates" / "index.html").read_text(encoding="utf-8"))

    return app


def _push_scheduler(
    app: FastAPI,
    http: Callable[[], httpx.AsyncClient],
    spawn: Callable[[Coroutine[Any, Any, Any]], None],
) -> Callable[[SimAccount, str, dict[str, Any], float], None]:
    """Sends an event push later, off the request that caused it (job-finished events)."""

    def schedule(account: SimAccount, openid: str, fields: dict[str, Any], delay_s: float) -> None:
        async def run() -> None:
            await asyncio.sleep(delay_s)
            platform: Platform = app.state.platform
            head = {
                "ToUserName": account.original_id,
                "FromUserName": openid,
                "CreateTime": int(platform.now()),
                "MsgType": "event",
            }
            try:
                await deliver(platform, http(), account, build_xml({**head, **fields}), openid=openid)
            except Exception:
                platform.stats_webhook["background_errors"] += 1

        spawn(run())

    return schedule
