"""The ``parley`` command: serve, worker, migrate, user, demo, bench and more."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
import uvloop

from parley.config import get_settings

if TYPE_CHECKING:
    from parley.context import Context

T = TypeVar("T")

app = typer.Typer(help="Parley, the open-source social CRM.", no_args_is_help=True, add_completion=False)
user_app = typer.Typer(help="Manage console users.", no_args_is_help=True)
bench_app = typer.Typer(
    help="Benchmarks; each prints its figures as JSON on its last line.", no_args_is_help=True
)
app.add_typer(user_app, name="user")
app.add_typer(bench_app, name="bench")


def _add_subcommands() -> None:
    from parley.channels.cli import channel_app
    from parley.sandbox.cli import sandbox_app

    app.add_typer(channel_app, name="channel")
    app.add_typer(sandbox_app, name="sandbox")


def run_with_context(work: Callable[[Context], Awaitable[T]]) -> T:
    """Runs ``work`` with a process context on a migrated database (CLI commands)."""
    from parley.context import build_context

    _migrate_embedded()

    async def main() -> T:
        ctx = build_context(get_settings())
        try:
            return await work(ctx)
        finally:
            await ctx.close()

    return asyncio.run(main())


_add_subcommands()


def _setup_logging() -> None:
    from parley.logging import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)


def _migrate_embedded() -> None:
    """The embedded default migrates itself; a shared PostgreSQL is migrated deliberately."""
    settings = get_settings()
    if settings.is_sqlite:
        from parley.migrate import upgrade

        upgrade(settings.database_url)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    no_workers: Annotated[
        bool, typer.Option("--no-workers", help="Serve HTTP only; run background work in `parley worker`")
    ] = False,
) -> None:
    """Run the HTTP API, webhooks, websockets and console pages."""
    import uvicorn

    from parley.app import create_app

    _setup_logging()
    settings = get_settings()
    settings.resolved_secret_key()  # refuse to start with a default secret outside development
    _migrate_embedded()
    application = create_app(settings, run_workers=not no_workers, settle_heap=True)
    uvicorn.run(application, host=host, port=port, log_config=None, access_log=False, lifespan="on")


@app.command()
def worker() -> None:
    """Run background work only (delivery, scheduled jobs)."""
    from parley.context import build_context
    from parley.kit.gc_tuning import settle_heap
    from parley.worker import run_forever

    _setup_logging()
    settings = get_settings()
    _migrate_embedded()

    async def main() -> None:
        ctx = build_context(settings)
        # Start-up is done: its objects need no more collecting (parley/kit/gc_tuning.py).
        settle_heap()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await run_forever(ctx, stop)
        finally:
            await ctx.close()

    # uvloop, as uvicorn uses for `parley serve`: the worker's loop is mostly HTTP sends and its
    # callbacks, where uvloop costs less CPU per message than the standard loop.
    uvloop.run(main())


@app.command()
def migrate(revision: Annotated[str, typer.Argument(help="Target revision")] = "head") -> None:
    """Apply database migrations (the only way the schema changes)."""
    from parley.migrate import upgrade

    _setup_logging()
    upgrade(get_settings().database_url, revision)
    typer.echo(f"Database is at {revision}.")


@user_app.command("create")
def user_create(
    email: Annotated[str, typer.Option(help="Sign-in email")],
    name: Annotated[str, typer.Option(help="Display name")],
    role: Annotated[str, typer.Option(help="Role name")] = "administrator",
    password: Annotated[
        str,
        typer.Option(prompt=True, hide_input=True, confirmation_prompt=True, help="At least 8 characters"),
    ] = "",
    locale: Annotated[str, typer.Option(help="en or zh_CN")] = "en",
    timezone: Annotated[str, typer.Option(help="IANA time zone")] = "UTC",
) -> None:
    """Create a console user."""
    from pydantic import ValidationError

    from parley.auth import service as auth_service
    from parley.auth.schemas import UserCreate
    from parley.context import build_context
    from parley.db import session_scope
    from parley.exceptions import ParleyError

    _migrate_embedded()

    async def main() -> str:
        ctx = build_context(get_settings())
        try:
            async with session_scope(ctx.sessionmaker) as session:
                await auth_service.role.ensure_builtin(session)
                data = UserCreate(
                    email=email, name=name, password=password, role=role, locale=locale, timezone=timezone
                )
                created = await auth_service.user.create(session, actor=None, data=data)
                return created.email
        finally:
            await ctx.close()

    try:
        created_email = asyncio.run(main())
    except ValidationError as exc:
        for error in exc.errors():
            typer.echo(f"error: {'.'.join(map(str, error['loc']))}: {error['msg']}", err=True)
        raise typer.Exit(2) from exc
    except ParleyError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"Created {created_email} ({role}).")


@app.command()
def demo(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the console")] = 8000,
) -> None:
    """Migrate, seed demo data, start the platform simulators and the server."""
    from parley.demo_runner import run_demo

    _setup_logging()
    run_demo(host=host, port=port)


def main() -> None:
    with contextlib.suppress(KeyboardInterrupt):
        app()
    sys.exit(0)


from parley.bench import commands as _bench_commands  # noqa: E402,F401  (registers `parley bench …`)
