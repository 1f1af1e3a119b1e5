"""Settings → Inbox, as an administrator uses it in the console."""

from __future__ import annotations

from sqlalchemy import select

from parley.conversations.lifecycle import idle_close_minutes
from parley.models import CannedResponse, ContactReason
from tests.fixtures.factories import create_user, signed_in


async def test_admin_defines_reasons_saved_replies_and_idle_time(client, session):
    await create_user(session, email="admin@example.com", role="administrator")
    browser = await signed_in(client, "admin@example.com")
    form = {"csrf_token": browser.csrf}
    assert (await client.post("/settings/inbox/reasons", data={**form, "name": "Orders"})).status_code == 303
    parent_id = (await session.scalar(select(ContactReason).where(ContactReason.name == "Orders"))).id
    await client.post(
        "/settings/inbox/reasons", data={**form, "name": "Change address", "parent_id": str(parent_id)}
    )
    await client.post(
        "/settings/inbox/canned",
        data={**form, "shortcut": "hello", "title": "Greeting", "body": "您好，很高兴为您服务！"},
    )
    await client.post("/settings/inbox/idle", data={**form, "minutes": "90"})

    await session.rollback()  # end the test's read snapshot so it sees what the requests wrote
    page = (await client.get("/settings/inbox", headers={"Accept": "text/html"})).text
    assert 'data-reason="Change address"' in page and "/hello" in page
    child = await session.scalar(select(ContactReason).where(ContactReason.name == "Change address"))
    assert child.parent_id == parent_id
    assert (await session.scalar(select(CannedResponse))).body == "您好，很高兴为您服务！"
    assert await idle_close_minutes(session) == 90

    duplicate = await client.post(
        "/settings/inbox/canned", data={**form, "shortcut": "hello", "body": "again"}
    )
    assert duplicate.status_code == 409
    too_short = await client.post("/settings/inbox/idle", data={**form, "minutes": "1"})
    assert too_short.status_code == 422


async def test_agents_cannot_change_inbox_settings(client, session):
    await create_user(session, email="agent@example.com", role="agent")
    browser = await signed_in(client, "agent@example.com")
    response = await client.post(
        "/settings/inbox/canned", data={"csrf_token": browser.csrf, "shortcut": "x", "body": "y"}
    )
    assert response.status_code == 403
