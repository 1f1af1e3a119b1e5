"""``parley bench outbound``: queue N messages to M simulated recipients and deliver them with real workers.

Everything is set up and torn down by the command: a temporary SQLite database
(or the one given), the WhatsApp simulator as a subprocess, a simulated
account with M users, and W ``parley worker`` processes. Delivery figures are
measured at the simulator (its record of when each message arrived), latency
is enqueue → simulator receipt per message.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from parley.bench.support import cpu_seconds
from parley.cli import bench_app


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _digits(n: int) -> str:
    return str(secrets.randbelow(9 * 10 ** (n - 1)) + 10 ** (n - 1))


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "parley", *args], env=env, stdout=out, stderr=subprocess.STDOUT
        )


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"simulator exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("simulator did not start")


def _steady_rate(times: list[float]) -> float:
    if len(times) < 20:
        return 0.0
    low, high = int(len(times) * 0.05), int(len(times) * 0.95)
    return round((high - low) / (times[high] - times[low]), 1)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@bench_app.command("outbound")
def outbound(
    messages: Annotated[int, typer.Option("--messages", "-n", help="Messages to queue")] = 10_000,
    recipients: Annotated[int, typer.Option("--recipients", "-m", help="Simulated recipients")] = 100,
    workers: Annotated[int, typer.Option("--workers", "-w", help="`parley worker` processes")] = 1,
    rate: Annotated[float, typer.Option(help="Account rate limit, messages/s (0: unthrottled)")] = 0.0,
    burst: Annotated[float, typer.Option(help="Bucket burst (0: a tenth of a second's worth)")] = 0.0,
    backend: Annotated[str, typer.Option(help="Flow-control backend: database or redis")] = "database",
    database_url: Annotated[str, typer.Option(help="Database (default: a temporary SQLite file)")] = "",
    agent_reply: Annotated[
        bool, typer.Option("--agent-reply", help="Also send one agent reply mid-run and time it")
    ] = False,
    timeout_s: Annotated[float, typer.Option(help="Give up after this long")] = 900.0,
    status_webhooks: Annotated[
        bool,
        typer.Option(
            "--status-webhooks",
            help="Let the simulator POST its status webhooks (to a closed port) as well, as it did before",
        ),
    ] = False,
) -> None:
    """Outbound delivery: enqueue rate, delivery rate at the simulator, end-to-end latency."""
    tmp = Path(tempfile.mkdtemp(prefix="parley-bench-outbound-"))
    url = database_url or f"sqlite+aiosqlite:///{tmp / 'bench.db'}"
    env = dict(os.environ)
    env.update(
        {
            "PARLEY_ENV": "testing",
            "PARLEY_DATABASE_URL": url,
            "PARLEY_DATA_DIR": str(tmp),
            "PARLEY_SECRET_KEY": secrets.token_urlsafe(48),
            "PARLEY_FLOW_BACKEND": backend,
            "PARLEY_LOG_LEVEL": "WARNING",
            "PARLEY_LOG_JSON": "true",
        }
    )
    port = _free_port()
    sim_url = f"http://127.0.0.1:{port}"
    sim = _start(["sandbox", "whatsapp", "--port", str(port)], env, tmp / "sim.log")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        _wait_ready(f"{sim_url}/_sandbox/state", sim)
        result = asyncio.run(
            _run(
                env=env,
                url=url,
                sim_url=sim_url,
                sim_pid=sim.pid,
                tmp=tmp,
                messages=messages,
                recipients=recipients,
                workers=workers,
                rate=rate,
                burst=burst,
                agent_reply=agent_reply,
                timeout_s=timeout_s,
                status_webhooks=status_webhooks,
                procs=procs,
            )
        )
    except BaseException:
        # The database and the processes' logs are what tells why a run failed: kept, and named.
        typer.echo(f"bench outbound failed; its database and logs are in {tmp}", err=True)
        raise
    finally:
        for proc in [*procs, sim]:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
    shutil.rmtree(tmp, ignore_errors=True)
    typer.echo(json.dumps(result))


async def _run(
    *,
    env: dict[str, str],
    url: str,
    sim_url: str,
    sim_pid: int,
    tmp: Path,
    messages: int,
    recipients: int,
    workers: int,
    rate: float,
    burst: float,
    agent_reply: bool,
    timeout_s: float,
    status_webhooks: bool,
    procs: list[subprocess.Popen[bytes]],
) -> dict[str, Any]:
    from pydantic import SecretStr
    from sqlalchemy import func, select

    from parley.channels.base import OutboundMessage, OutboundType, Template
    from parley.channels.schemas import ChannelAccountCreate
    from parley.channels.service import channel_account
    from parley.config import Settings, configure
    from parley.context import build_context
    from parley.db import session_scope
    from parley.delivery import service as delivery
    from parley.migrate import upgrade
    from parley.models import Message, MessageStatus, Priority

    settings = configure(
        Settings(database_url=url, data_dir=tmp, secret_key=SecretStr(env["PARLEY_SECRET_KEY"]))
    )
    await asyncio.to_thread(upgrade, url)
    waba, number, token = _digits(15), _digits(15), "EAAG" + secrets.token_hex(16)
    async with httpx.AsyncClient(base_url=sim_url, timeout=30) as sim:
        (
            await sim.post(
                "/_sandbox/accounts",
                json={
                    "business_account_id": waba,
                    "phone_numbers": [{"phone_number_id": number, "display_phone_number": "15550001111"}],
                    "access_token": token,
                    "app_secret": "bench-app-secret",
                    "verify_token": "bench-verify-token",
                    # With --status-webhooks, a closed port makes them fail at once.
                    "webhook_url": f"http://127.0.0.1:{_free_port()}/nowhere",
                },
            )
        ).raise_for_status()
        users = ["1" + _digits(11) for _ in range(recipients)]
        for wa_id in users:
            (
                await sim.post(f"/_sandbox/accounts/{waba}/users", json={"name": wa_id, "wa_id": wa_id})
            ).raise_for_status()
        (
            await sim.post(
                f"/_sandbox/accounts/{waba}/limits",
                json={
                    "rate_per_s": max(rate * 1.1, 100_000.0) if rate == 0 else rate * 1.1,
                    "unlimited_messaging": True,
                    "status_mode": "manual",
                    "webhook_retry_delays_s": [],
                    "webhook_timeout_s": 1.0,
                    # The platform's status webhooks are its own work, not Parley's; on this machine they
                    # would compete with the worker for the same cores (``--status-webhooks`` keeps them).
                    "webhooks_subscribed": status_webhooks,
                },
            )
        ).raise_for_status()

    ctx = build_context(settings)
    try:
        async with session_scope(ctx.sessionmaker) as session:
            account = await channel_account.create(
                session,
                actor=None,
                box=ctx.secret_box,
                data=ChannelAccountCreate.model_validate(
                    {
                        "type": "whatsapp",
                        "name": "Bench",
                        "api_base_url": sim_url,
                        "credentials": {
                            "phone_number_id": number,
                            "business_account_id": waba,
                            "access_token": token,
                            "app_secret": "bench-app-secret",
                            "verify_token": "bench-verify-token",
                        },
                    }
                ),
            )
            await delivery.set_limits(session, account_id=account.id, rate_per_s=rate, burst=burst or None)

        def message(i: int) -> OutboundMessage:
            return OutboundMessage(
                to=users[i % recipients],
                type=OutboundType.template,
                template=Template(name="hello_world", language="en_US"),
                idempotency_key=delivery.new_idempotency_key(),
            )

        started = time.perf_counter()
        for start in range(0, messages, 1000):
            async with session_scope(ctx.sessionmaker) as session:
                await delivery.enqueue_many(
                    session,
                    account=account,
                    messages=[message(i) for i in range(start, min(messages, start + 1000))],
                    priority=Priority.bulk,
                )
        enqueue_s = time.perf_counter() - started

        for i in range(workers):
            procs.append(_start(["worker"], env, tmp / f"worker-{i}.log"))

        reply_key: str | None = None
        # CPU per delivered message, measured from the first recorded send to the last: unlike the
        # rates, it does not depend on what else the machine is running.
        cpu_start: tuple[int, list[float | None]] | None = None
        cpu_end: tuple[int, list[float | None]] | None = None
        pids = [sim_pid, *(p.pid for p in procs)]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            async with session_scope(ctx.sessionmaker, write=False) as session:
                queued = await session.scalar(
                    select(func.count()).where(Message.status == MessageStatus.queued)
                )
                if cpu_start is None and (queued or 0) < messages:
                    cpu_start = (messages - (queued or 0), [cpu_seconds(pid) for pid in pids])
                elif cpu_start is not None and queued:
                    cpu_end = (messages - queued, [cpu_seconds(pid) for pid in pids])
                if agent_reply and reply_key is None and (queued or 0) <= messages // 2:
                    # Half the broadcast is still queued: now an agent answers a customer.
                    async with session_scope(ctx.sessionmaker) as write:
                        reply = await delivery.enqueue(
                            write, account=account, message=message(0), priority=Priority.agent_reply
                        )
                        reply_key = reply.idempotency_key
                    continue
            if not queued:
                break
        async with session_scope(ctx.sessionmaker, write=False) as session:
            created = {
                key: at.timestamp()
                for key, at in (
                    await session.execute(select(Message.idempotency_key, Message.created_at))
                ).all()
            }
            statuses = dict(
                (await session.execute(select(Message.status, func.count()).group_by(Message.status))).all()
            )
    finally:
        await ctx.close()

    async with httpx.AsyncClient(base_url=sim_url, timeout=120) as sim:
        record = (await sim.get("/_sandbox/record", params={"phone_number_id": number})).json()
        stats = (await sim.get("/_sandbox/stats")).json()
    times = sorted(float(e["timestamp"]) for e in record)
    latencies = [
        (float(e["timestamp"]) - created[e["idempotency_key"]]) * 1000
        for e in record
        if e["idempotency_key"] in created
    ]
    keys = [e["idempotency_key"] for e in record]
    result: dict[str, Any] = {
        "messages": messages,
        "recipients": recipients,
        "workers": workers,
        "rate_limit": rate,
        "flow_backend": env["PARLEY_FLOW_BACKEND"],
        "database": url.split(":", 1)[0],
        "received": len(set(keys)),
        "duplicates": len(keys) - len(set(keys)),
        "statuses": statuses,
        "enqueue_per_s": round(messages / enqueue_s, 1),
        "deliver_per_s": round((len(times) - 1) / (times[-1] - times[0]), 1) if len(times) > 1 else 0.0,
        # The same between the 5th and 95th percentile of arrivals: the steady rate, without the
        # start-up burst and the tail of retried sends.
        "steady_per_s": _steady_rate(times),
        "p50_ms": round(statistics.median(latencies), 1) if latencies else None,
        "p99_ms": round(_percentile(latencies, 0.99), 1) if latencies else None,
        "simulator_errors": stats.get("errors_by_code", {}),
        "status_webhooks": status_webhooks,
        "cpus": os.cpu_count(),
    }
    if cpu_start is not None and cpu_end is not None and cpu_end[0] > cpu_start[0]:
        done = cpu_end[0] - cpu_start[0]
        used = [
            (b - a) if a is not None and b is not None else None
            for a, b in zip(cpu_start[1], cpu_end[1], strict=True)
        ]
        if None not in used:
            result["simulator_cpu_ms_per_msg"] = round(used[0] * 1000 / done, 3)  # type: ignore[operator]
            result["workers_cpu_ms_per_msg"] = round(sum(used[1:]) * 1000 / done, 3)  # type: ignore[arg-type]
    if reply_key is not None:
        reply_at = next((float(e["timestamp"]) for e in record if e["idempotency_key"] == reply_key), None)
        result["agent_reply_ms"] = round((reply_at - created[reply_key]) * 1000, 1) if reply_at else None
    return result
