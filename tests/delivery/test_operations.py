"""The operations API and console page, the Prometheus figures, and status updates from webhooks."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from parley.context import Context
from parley.db import session_scope
from parley.delivery import service as delivery
from parley.delivery.engine import DeliveryEngine
from parley.models import Message, MessageStatus, OutboxJob, OutboxJobStatus
from parley.ops.inflight import InflightLimitMiddleware
from tests.delivery.support import create_parley_account, register_sim_account, template_to
from tests.fixtures.factories import create_token, create_user, signed_in


async def _one_dead_letter(ctx: Context, session: AsyncSession, sim_url: str) -> int:
    """A job that failed for good: its recipient is not on WhatsApp (131026)."""
    sim = register_sim_account(sim_url, users=1)
    async with session_scope(ctx.sessionmaker) as write:
        account = await create_parley_account(write, sim)
        await delivery.enqueue(write, account=account, message=template_to("19999999999"))
    await DeliveryEngine(ctx).run_until_idle()
    job = await session.scalar(select(OutboxJob))
    assert job is not None and job.status == OutboxJobStatus.failed
    return job.id


class TestOperationsAPI:
    async def test_supervisor_sees_failures_and_retries_them(
        self, ctx: Context, session: AsyncSession, client: httpx.AsyncClient, whatsapp_sim: str
    ) -> None:
        job_id = await _one_dead_letter(ctx, session, whatsapp_sim)
        supervisor = await create_user(session, email="sup@example.com", role="supervisor")
        headers = {"Authorization": f"Bearer {await create_token(session, supervisor)}"}

        figures = (await client.get("/api/v1/operations/delivery", headers=headers)).json()
        assert figures["failures"] == [{"status": "failed", "code": "131026", "count": 1}]
        assert [d["job_id"] for d in figures["dead_letters"]] == [job_id]
        assert figures["depth_by_priority"]["automated"] == 0

        metrics = (await client.get("/metrics")).text
        assert 'parley_delivery_failures{reason="131026",status="failed"} 1.0' in metrics

        response = await client.post(
            "/api/v1/operations/delivery/retry", json={"job_ids": [job_id]}, headers=headers
        )
        assert response.json() == {"retried": 1}
        await session.rollback()  # a fresh snapshot (SQLite WAL readers keep theirs)
        job = await session.get(OutboxJob, job_id)
        message = await session.get(Message, job.message_id) if job else None
        assert job is not None and job.status == OutboxJobStatus.pending and job.attempts == 0
        assert message is not None and message.status == MessageStatus.queued and message.error_code is None
        figures = (await client.get("/api/v1/operations/delivery", headers=headers)).json()
        assert figures["depth_by_priority"]["automated"] == 1
        assert figures["oldest_waiting"]["job_id"] == job_id

    async def test_agent_may_not_see_or_retry(self, session: AsyncSession, client: httpx.AsyncClient) -> None:
        agent = await create_user(session, email="agent@example.com", role="agent")
        headers = {"Authorization": f"Bearer {await create_token(session, agent)}"}
        assert (await client.get("/api/v1/operations/delivery", headers=headers)).status_code == 403
        response = await client.post("/api/v1/operations/delivery/retry", json={}, headers=headers)
        assert response.status_code == 403

    async def test_limits_can_be_read_and_overridden(
        self, ctx: Context, session: AsyncSession, client: httpx.AsyncClient, whatsapp_sim: str
    ) -> None:
        sim = register_sim_account(whatsapp_sim, users=1)
        account = await create_parley_account(session, sim)
        admin = await create_user(session, email="root@example.com", role="administrator")
        headers = {"Authorization": f"Bearer {await create_token(session, admin)}"}
        url = f"/api/v1/operations/accounts/{account.id}/limits"
        default = (await client.get(url, headers=headers)).json()
        assert default["rate_per_s"] == 80.0  # WhatsApp's per-number throughput
        body = {"rate_per_s": 200, "burst": 20, "daily_quotas": {"messages": 1000}}
        updated = (await client.put(url, json=body, headers=headers)).json()
        assert (updated["rate_per_s"], updated["burst"], updated["daily_quotas"]["messages"]) == (
            200,
            20,
            1000,
        )


class TestOperationsPage:
    @pytest.mark.parametrize(
        ("locale", "heading", "retry_label"),
        [("en", "Operations", "Retry all"), ("zh_CN", "运行监控", "全部重试")],
    )
    async def test_page_lists_dead_letters_and_retries_in_bulk(
        self,
        ctx: Context,
        session: AsyncSession,
        client: httpx.AsyncClient,
        whatsapp_sim: str,
        locale: str,
        heading: str,
        retry_label: str,
    ) -> None:
        job_id = await _one_dead_letter(ctx, session, whatsapp_sim)
        await create_user(session, email="sup@example.com", role="supervisor", locale=locale)
        browser = await signed_in(client, "sup@example.com")
        page = await client.get("/operations")
        assert page.status_code == 200
        assert f"<h1>{heading}</h1>" in page.text
        assert 'href="/operations"' in page.text  # the nav link
        assert re.search(rf'name="job_id" value="{job_id}"', page.text)
        assert retry_label in page.text and "131026" in page.text

        response = await client.post("/operations/retry", data={"csrf_token": browser.csrf, "all": "1"})
        assert response.status_code == 303
        await session.rollback()  # a fresh snapshot (SQLite WAL readers keep theirs)
        job = await session.get(OutboxJob, job_id)
        assert job is not None and job.status == OutboxJobStatus.pending

    async def test_agent_has_no_operations_link(
        self, session: AsyncSession, client: httpx.AsyncClient
    ) -> None:
        await create_user(session, email="agent@example.com", role="agent")
        await signed_in(client, "agent@example.com")
        home = await client.get("/settings/profile")
        assert 'href="/operations"' not in home.text
        assert (await client.get("/operations")).status_code == 403


class TestApplyStatus:
    async def test_statuses_only_move_forward(
        self, ctx: Context, session: AsyncSession, whatsapp_sim: str
    ) -> None:
        sim = register_sim_account(whatsapp_sim, users=1)
        async with session_scope(ctx.sessionmaker) as write:
            account = await create_parley_account(write, sim)
            message = await delivery.enqueue(write, account=account, message=template_to(sim.users[0]))
        await DeliveryEngine(ctx).run_until_idle()
        sent = await session.get(Message, message.id)
        assert sent is not None and sent.platform_message_id
        wamid = sent.platform_message_id

        async with session_scope(ctx.sessionmaker) as write:
            for status in ("read", "delivered", "sent", "failed"):  # out of order, as webhooks come
                await delivery.apply_status(
                    write, account_id=account.id, platform_message_id=wamid, status=status
                )
            assert (
                await delivery.apply_status(
                    write, account_id=account.id, platform_message_id="nope", status="read"
                )
                is None
            )
        await session.rollback()  # a fresh snapshot (SQLite WAL readers keep theirs)
        final = await session.get(Message, message.id)
        assert final is not None
        assert final.status == MessageStatus.read
        assert final.delivered_at is not None and final.read_at is not None and final.failed_at is None


class TestInflightLimit:
    async def test_sheds_past_the_limit_with_retry_after(self) -> None:
        release = asyncio.Event()
        entered = 0

        async def slow(request: Request) -> PlainTextResponse:
            nonlocal entered
            entered += 1
            await release.wait()
            return PlainTextResponse("ok")

        async def health(request: Request) -> PlainTextResponse:
            return PlainTextResponse("ok")

        app = Starlette(
            routes=[Route("/channels/x/webhook", slow, methods=["POST"]), Route("/healthz", health)]
        )
        limited = InflightLimitMiddleware(app, max_inflight=2)
        transport = httpx.ASGITransport(app=limited)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            held = [asyncio.create_task(client.post("/channels/x/webhook")) for _ in range(2)]
            while entered < 2:
                await asyncio.sleep(0.01)
            shed = await client.post("/channels/x/webhook")
            assert shed.status_code == 503
            assert shed.headers["retry-after"] == "1"
            assert shed.json()["error"] == "Overloaded"
            assert (await client.get("/healthz")).status_code == 200  # probes still answer
            release.set()
            assert [r.status_code for r in await asyncio.gather(*held)] == [200, 200]
            assert (await client.post("/channels/x/webhook")).status_code == 200

    def test_app_registers_the_limit(self, settings: object) -> None:
        from parley.app import create_app

        app = create_app(settings)  # type: ignore[arg-type]
        entries = [m for m in app.user_middleware if m.cls is InflightLimitMiddleware]
        assert entries and entries[0].kwargs["max_inflight"] == settings.max_inflight_inbound  # type: ignore[attr-defined]
