"""``parley sandbox wechat|whatsapp``: run a platform simulator."""

from __future__ import annotations

from typing import Annotated

import typer
import uvicorn

sandbox_app = typer.Typer(help="Run a platform simulator.", no_args_is_help=True)


@sandbox_app.command("wechat")
def wechat(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 9101,
) -> None:
    """Simulate the WeChat Official Account platform (API, signed and encrypted webhooks, phone page)."""
    from parley.sandbox.wechat.app import create_app

    uvicorn.run(create_app(), host=host, port=port, log_config=None, access_log=False)


@sandbox_app.command("whatsapp")
def whatsapp(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 9102,
) -> None:
    """Simulate the WhatsApp Cloud API (Graph API, signed webhooks, phone page)."""
    from parley.kit.gc_tuning import settle_heap
    from parley.sandbox.whatsapp.app import create_app

    app = create_app()
    # The simulator keeps every send in its record: without this, each full collection walks the
    # whole record again (parley/kit/gc_tuning.py).
    settle_heap()
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False)
