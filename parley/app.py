"""The ASGI application: ``create_app()``, its lifespan and middleware."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from parley import __version__
from parley.api import router
from parley.auth import service as auth_service
from parley.channels.edge import EdgeApp, WebhookEdge
from parley.channels.endpoints import webhooks as webhooks_router
from parley.config import Settings, get_settings
from parley.context import Context, build_context
from parley.conversations.intake import intake_of
from parley.db import session_scope
from parley.exceptions import ParleyError
from parley.ops.inflight import InflightGate, InflightLimitMiddleware
from parley.ops.limits import BodySizeLimitMiddleware
from parley.ops.metrics import MetricsMiddleware
from parley.realtime.service import hub_of, start_bus
from parley.web.auth import LoginRequired
from parley.web.rendering import render
from parley.worker import Runner

log = structlog.get_logger()

_MACHINE_PREFIXES = ("/api/", "/channels/", "/healthz", "/readyz", "/metrics", "/ws")


def _wants_html(request: Request) -> bool:
    if request.url.path.startswith(_MACHINE_PREFIXES):
        return False
    return "text/html" in request.headers.get("accept", "")


async def _handle_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, LoginRequired):
        return RedirectResponse(f"/login?next={quote(exc.next_path)}", status_code=303)
    if not isinstance(exc, ParleyError):  # pragma: no cover - registered for ParleyError only
        raise exc
    if _wants_html(request):
        principal = getattr(request.state, "principal", None)
        return render(
            request,
            "error.html",
            principal,
            status_code=exc.status_code,
            code=exc.status_code,
            message=exc.message,
        )
    return JSONResponse(exc.payload(), status_code=exc.status_code, headers=exc.headers)


def create_app(
    settings: Settings | None = None, *, run_workers: bool = False, settle_heap: bool = False
) -> FastAPI:
    """Builds the application; ``run_workers`` also runs background work in this process.

    ``settle_heap`` (``parley serve``): once started, freeze the start-up heap and collect the young
    generation less often (parley/kit/gc_tuning.py). A full collection walked the whole heap for
    150–350 ms, stalling every webhook and websocket of the process meanwhile.
    """
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx: Context = build_context(settings)
        app.state.ctx = ctx
        app.state.engine = ctx.engine
        app.state.sessionmaker = ctx.sessionmaker
        async with session_scope(ctx.sessionmaker) as session:
            await auth_service.role.ensure_builtin(session)
        await start_bus(ctx)
        hub_of(ctx)
        runner = Runner(ctx) if run_workers else None
        if runner:
            runner.start()
        log.info(
            "app.started", database=ctx.engine.url.render_as_string(hide_password=True), workers=run_workers
        )
        if settle_heap:
            from parley.kit.gc_tuning import settle_heap as settle

            settle()
        try:
            yield
        finally:
            if runner:
                await runner.shutdown()
            await ctx.close()

    app = EdgeApp(
        title="Parley",
        version=__version__,
        summary="Social CRM: one inbox for WeChat, WhatsApp, web chat and email.",
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url="/api/redoc",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.add_exception_handler(ParleyError, _handle_error)
    # One in-flight count for the API, the console and the webhook edge.
    gate = InflightGate(settings.max_inflight_inbound)
    app.add_middleware(InflightLimitMiddleware, max_inflight=settings.max_inflight_inbound, gate=gate)
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        uploads={
            "/api/v1/contacts/imports": settings.import_max_bytes,
            "/contacts/imports": settings.import_max_bytes,
        },
    )
    # Platforms' webhook POSTs are answered ahead of the middlewares and FastAPI, with the same
    # limits, metrics and answers (parley.channels.edge, docs/decisions/0012-webhook-edge.md).
    app.webhook_edge = WebhookEdge(gate=gate, max_body_bytes=settings.max_body_bytes, intake=intake_of)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "web" / "static"), name="static")
    # Platforms' webhooks are the high-rate route: FastAPI tries routes in order, and walking past the
    # API's and console's hundreds of routes cost a webhook more than its signature check, AES and XML
    # together. Matched first here (the GET handshake, and a POST the edge leaves to FastAPI); the
    # copy in ``router`` is the one the API docs show.
    app.include_router(webhooks_router, include_in_schema=False)
    app.include_router(router)
    return app
