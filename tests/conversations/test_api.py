"""The conversations REST API as an agent's console (or an integration) uses it."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

from sqlalchemy import select

from parley.channels.base import Sender
from parley.conversations.lifecycle import close_idle, set_idle_close_minutes, wake_snoozed
from parley.kit.types import utcnow
from parley.models import Conversation, Message
from parley.realtime.bus import MemoryBus
from tests.conversations.test_pipeline import Recorder, deliver, text
from tests.fixtures.factories import create_channel_account, create_token, create_user


async def _conversation(session, *, channel="whatsapp", minutes_ago=1, name="Zhang Wei"):
    account = await create_channel_account(
        session, type=channel, name=f"{channel} account", external_id=f"{channel}-1"
    )
    at = utcnow() - timedelta(minutes=minutes_ago)
    [outcome] = await deliver(
        session,
        Recorder(),
        account,
        [text(account.external_id, Sender(id="8613800000000", display_name=name), "我要改地址", "m1", at)],
    )
    return account, outcome.conversation


async def _agent(session, email="agent@example.com", role="agent"):
    user = await create_user(session, email=email, name=email.split("@")[0].title(), role=role)
    return user, {"Authorization": f"Bearer {await create_token(session, user)}"}


class TestList:
    async def test_views_filter_by_assignment(self, client, session):
        _account, conversation = await _conversation(session)
        _agent_user, headers = await _agent(session)
        listed = (await client.get("/api/v1/conversations?view=unassigned", headers=headers)).json()
        assert [c["id"] for c in listed["items"]] == [str(conversation.id)]
        assert listed["items"][0]["contact_name"] == "Zhang Wei"
        assert listed["items"][0]["unread_count"] == 1
        assert (
            await client.post(f"/api/v1/conversations/{conversation.id}/accept", headers=headers)
        ).status_code == 204
        assert (await client.get("/api/v1/conversations?view=unassigned", headers=headers)).json()[
            "total"
        ] == 0
        mine = (await client.get("/api/v1/conversations?view=mine", headers=headers)).json()
        assert mine["items"][0]["assignee_name"] == "Agent"

    async def test_detail_has_history_window_and_contact(self, client, session):
        _account, conversation = await _conversation(session)
        _agent_user, headers = await _agent(session)
        detail = (await client.get(f"/api/v1/conversations/{conversation.id}", headers=headers)).json()
        assert [m["text"] for m in detail["messages"]] == ["我要改地址"]
        assert detail["window"]["open"] is True
        assert {i["kind"] for i in detail["contact"]["identities"]} >= {"whatsapp_id"}


class TestAccept:
    async def test_second_agent_cannot_take_an_accepted_conversation(self, client, session):
        _account, conversation = await _conversation(session)
        _one, first = await _agent(session, "one@example.com")
        _two, second = await _agent(session, "two@example.com")
        assert (
            await client.post(f"/api/v1/conversations/{conversation.id}/accept", headers=first)
        ).status_code == 204
        response = await client.post(f"/api/v1/conversations/{conversation.id}/accept", headers=second)
        assert response.status_code == 409
        assert "already taken" in response.json()["detail"]

    async def test_agent_cannot_reassign_a_colleagues_conversation(self, client, session):
        _account, conversation = await _conversation(session)
        _one, first = await _agent(session, "one@example.com")
        two, second = await _agent(session, "two@example.com")
        await client.post(f"/api/v1/conversations/{conversation.id}/accept", headers=first)
        response = await client.post(
            f"/api/v1/conversations/{conversation.id}/assign",
            json={"assignee_id": str(two.id)},
            headers=second,
        )
        assert response.status_code == 403
        _sup, supervisor = await _agent(session, "sup@example.com", role="supervisor")
        response = await client.post(
            f"/api/v1/conversations/{conversation.id}/assign",
            json={"assignee_id": str(two.id)},
            headers=supervisor,
        )
        assert response.status_code == 204


class TestWindow:
    async def test_whatsapp_free_text_refused_after_24_hours(self, client, session):
        _account, conversation = await _conversation(session, minutes_ago=25 * 60)
        _agent_user, headers = await _agent(session)
        detail = (await client.get(f"/api/v1/conversations/{conversation.id}", headers=headers)).json()
        assert detail["window"]["open"] is False
        response = await client.post(
            f"/api/v1/conversations/{conversation.id}/messages",
            json={"type": "text", "text": "hi"},
            headers=headers,
        )
        assert response.status_code == 422
        assert "approved template" in response.json()["detail"]
        assert await session.scalar(select(Message).where(Message.direction == "out")) is None

    async def test_notes_are_allowed_outside_the_window_and_never_sent(self, client, session):
        _account, conversation = await _conversation(session, minutes_ago=25 * 60)
        _agent_user, headers = await _agent(session)
        response = await client.post(
            f"/api/v1/conversations/{conversation.id}/messages",
            json={"type": "note", "text": "VIP, call back"},
            headers=headers,
        )
        assert response.status_code == 201
        note = response.json()
        assert (note["kind"], note["author_name"]) == ("note", "Agent")


class TestClosing:
    async def test_close_needs_a_contact_reason_once_reasons_exist(self, client, session, admin_headers):
        _account, conversation = await _conversation(session)
        parent = (
            await client.post("/api/v1/contact-reasons", json={"name": "Orders"}, headers=admin_headers)
        ).json()
        child = (
            await client.post(
                "/api/v1/contact-reasons",
                json={"name": "Change address", "parent_id": parent["id"]},
                headers=admin_headers,
            )
        ).json()
        _agent_user, headers = await _agent(session)
        url = f"/api/v1/conversations/{conversation.id}/status"
        refused = await client.post(url, json={"status": "resolved"}, headers=headers)
        assert refused.status_code == 422
        assert "contact reason" in refused.json()["detail"]
        assert (
            await client.post(
                url, json={"status": "resolved", "contact_reason_id": child["id"]}, headers=headers
            )
        ).status_code == 204
        await session.refresh(conversation)
        assert conversation.status == "resolved"
        assert str(conversation.contact_reason_id) == child["id"]

    async def test_idle_conversations_close_and_snoozed_ones_wake(self, session):
        _account, conversation = await _conversation(session, minutes_ago=90)
        ctx = SimpleNamespace(extras={"realtime.bus": MemoryBus()})
        await set_idle_close_minutes(session, 120)
        assert await close_idle(session, ctx) == 0  # type: ignore[arg-type]
        await set_idle_close_minutes(session, 60)
        assert await close_idle(session, ctx) == 1  # type: ignore[arg-type]
        await session.commit()
        await session.refresh(conversation)
        assert conversation.status == "resolved"

        conversation.status, conversation.snoozed_until = "snoozed", utcnow() - timedelta(seconds=1)
        await session.commit()
        assert await wake_snoozed(session, ctx) == 1  # type: ignore[arg-type]
        await session.commit()
        assert (await session.get(Conversation, conversation.id)).status == "open"


class TestPresence:
    async def test_presence_is_stored_and_listed(self, client, session):
        _agent_user, headers = await _agent(session)
        assert (
            await client.put("/api/v1/me/presence", json={"presence": "online"}, headers=headers)
        ).status_code == 204
        agents = (await client.get("/api/v1/agents", headers=headers)).json()
        assert agents == [{"id": str(_agent_user.id), "name": "Agent", "presence": "online"}]
        assert (
            await client.put("/api/v1/me/presence", json={"presence": "asleep"}, headers=headers)
        ).status_code == 422
