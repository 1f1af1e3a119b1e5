"""The minimal inbound handler for ``parley bench inbound --ceiling``: verify, parse, insert one row.

Same database, same adapter, same server stack as the real webhook: the same
webhook edge (:mod:`parley.channels.edge`: body limit, in-flight cap, metrics,
the handler with its account re-check, the adapter's verify/parse/acknowledge),
the same group commit (``parley.conversations.intake``) and cached account
lookup, with ``store_only`` (``store_only_batch`` for a batch) as the intake's work and nothing else, so the gap
between the two is what the pipeline costs.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI

from parley.channels.edge import EdgeApp, WebhookEdge
from parley.config import get_settings
from parley.context import Context, build_context
from parley.conversations.intake import Intake, store_only, store_only_batch
from parley.ops.inflight import InflightGate


def create_app() -> FastAPI:
    settings = get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx = build_context(settings)
        app.state.ctx = ctx
        # Grouped the same way as the real webhook (group commit, cached account lookup), so the
        # ratio between the two measures the pipeline's work and nothing else.
        app.state.intake = Intake(ctx.sessionmaker, store_only, batch=store_only_batch)
        yield
        await app.state.intake.close()
        await ctx.close()

    app = EdgeApp(lifespan=lifespan)

    def intake(_ctx: Context) -> Intake:
        found: Intake = app.state.intake
        return found

    app.webhook_edge = WebhookEdge(
        gate=InflightGate(settings.max_inflight_inbound),
        max_body_bytes=settings.max_body_bytes,
        intake=intake,
    )

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(create_app(), host="127.0.0.1", port=args.port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()
