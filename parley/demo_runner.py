"""``parley demo``: one command from a fresh clone to a console in the browser."""

from __future__ import annotations

import asyncio

import uvicorn

from parley.app import create_app
from parley.config import get_settings
from parley.context import build_context
from parley.db import session_scope
from parley.demo import DEMO_LOGINS, seed_people
from parley.migrate import upgrade


async def _seed() -> None:
    ctx = build_context(get_settings())
    try:
        async with session_scope(ctx.sessionmaker) as session:
            await seed_people(session)
    finally:
        await ctx.close()


def run_demo(*, host: str, port: int) -> None:
    settings = get_settings()
    upgrade(settings.database_url)
    asyncio.run(_seed())
    url = f"http://{host}:{port}/"
    lines = [
        "",
        "Parley demo",
        f"  Console:  {url}",
        f"  API docs: {url}api/docs",
        "  Logins:",
        *(f"    {login.role:<14} {login.email:<26} {login.password}" for login in DEMO_LOGINS),
        "",
    ]
    print("\n".join(lines), flush=True)  # noqa: T201
    uvicorn.run(
        create_app(settings, run_workers=True), host=host, port=port, log_config=None, access_log=False
    )
