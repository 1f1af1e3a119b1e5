"""The minimal inbound handler for ``parley bench inbound --ceiling``: verify, parse, insert one row.

Same database, same adapter, same server stack as the real webhook, the same
group commit (``parley.conversations.intake``) and cached account lookup, and
nothing else, so the gap between the two is what the pipeline costs.
"""

from __future__ import annotations

import argparse
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI, Request, Response

from parley.channels.base import SignatureError, WebhookRequest
from parley.channels.runtime import runtime
from parley.config import get_settings
from parley.context import build_context
from parley.conversations.intake import Intake, store_only


def create_app() -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx = build_context(get_settings())
        app.state.ctx = ctx
        # Grouped the same way as the real webhook (group commit, cached account lookup), so the
        # ratio between the two measures the pipeline's work and nothing else.
        app.state.intake = Intake(ctx.sessionmaker, store_only)
        yield
        await app.state.intake.close()
        await ctx.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/channels/{channel_type}/{account_id}/webhook")
    async def webhook(request: Request, channel_type: str, account_id: uuid.UUID) -> Response:
        ctx = request.app.state.ctx
        intake: Intake = request.app.state.intake
        body = await request.body()
        account, _cached = await intake.accounts.get(account_id)
        if account is None:
            return Response(status_code=404)
        adapter = runtime(ctx).adapter(account)
        hook = WebhookRequest(
            "POST", dict(request.query_params), {k.lower(): v for k, v in request.headers.items()}, body
        )
        try:
            adapter.verify(hook)
        except SignatureError:
            return Response(status_code=403)
        try:
            await intake.submit(account, adapter.parse(hook), body.decode())
        except Exception:
            return Response(status_code=503)
        return Response(b"success", media_type="text/plain")

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(create_app(), host="127.0.0.1", port=args.port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()
