"""Routing through the REST API and the console: administration, transfers, take-over, wallboard."""

from __future__ import annotations

from sqlalchemy import func, select

from parley.models import Conversation, EntryStatus, Message, QueueEntry, RoutingQueue
from tests.conversations.test_api import _agent, _conversation
from tests.fixtures.factories import signed_in


async def _queue(client, headers, **body):
    response = await client.post("/api/v1/routing/queues", json={"name": "Support", **body}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def _online(client, headers):
    assert (
        await client.put("/api/v1/me/presence", json={"presence": "online"}, headers=headers)
    ).status_code == 204


async def test_queue_administration_refuses_bad_input_with_reasons(client, session, admin_headers):
    queue = await _queue(
        client,
        admin_headers,
        strategy="round_robin",
        hours={"timezone": "Asia/Shanghai", "days": {"mon": [["09:00", "12:00"], ["13:00", "18:00"]]}},
    )
    assert queue["hours"]["days"]["mon"] == [["09:00", "12:00"], ["13:00", "18:00"]]
    bad = [
        ({"name": "X", "hours": {"timezone": "Mars/Olympus"}}, "time zone"),
        ({"name": "X", "hours": {"days": {"mon": [["9am", "12:00"]]}}}, "HH:MM"),
        ({"name": "X", "hours": {"days": {"someday": [["09:00", "12:00"]]}}}, "unknown day"),
        ({"name": "X", "strategy": "random"}, "strategy"),
        ({"name": "X", "overflow_after_s": 60}, "Overflow needs"),
        ({"name": "support"}, "already exists"),
    ]
    for body, reason in bad:
        response = await client.post("/api/v1/routing/queues", json=body, headers=admin_headers)
        assert response.status_code in (409, 422), body
        assert reason in response.text, (body, response.text)
    response = await client.put(
        f"/api/v1/routing/queues/{queue['id']}",
        json={"name": "Support", "overflow_queue_id": queue["id"], "overflow_after_s": 60},
        headers=admin_headers,
    )
    assert response.status_code == 422 and "into itself" in response.text
    assert await session.scalar(select(func.count()).select_from(RoutingQueue)) == 1


async def test_agents_cannot_administer_queues(client, session):
    _user, headers = await _agent(session)
    assert (
        await client.post("/api/v1/routing/queues", json={"name": "Q"}, headers=headers)
    ).status_code == 403
    assert (await client.get("/api/v1/routing/wallboard", headers=headers)).status_code == 403


async def test_member_goes_online_and_gets_the_waiting_customer_then_transfers_with_a_note(
    client, session, admin_headers
):
    _account, conversation = await _conversation(session)
    queue = await _queue(client, admin_headers)
    other = await _queue(client, admin_headers, name="Billing")
    ann, ann_headers = await _agent(session, "ann@example.com")
    bob, bob_headers = await _agent(session, "bob@example.com")
    for user in (ann, bob):
        response = await client.put(
            f"/api/v1/routing/queues/{queue['id']}/members",
            json={"user_id": str(user.id)},
            headers=admin_headers,
        )
        assert response.status_code == 204
    rule = await client.post(
        "/api/v1/routing/rules", json={"name": "all", "queue_id": queue["id"]}, headers=admin_headers
    )
    assert rule.status_code == 201
    # The customer waits (nobody online) until Ann comes online.
    await session.execute(
        QueueEntry.__table__.insert().values(
            id=__import__("uuid").uuid4(),
            queue_id=__import__("uuid").UUID(queue["id"]),
            conversation_id=conversation.id,
            contact_id=conversation.contact_id,
            status="waiting",
            priority=0,
            entered_at=conversation.created_at,
            waiting_since=conversation.created_at,
            note="",
            reason="test",
        )
    )
    await session.commit()
    board = (await client.get("/api/v1/routing/wallboard", headers=admin_headers)).json()
    support = next(q for q in board["queues"] if q["name"] == "Support")
    assert support["waiting"] == 1 and support["agents"]["offline"] == 2

    await _online(client, ann_headers)
    await session.commit()
    refreshed = await session.get(Conversation, conversation.id, populate_existing=True)
    assert refreshed.assignee_id == ann.id

    # Bob may not move Ann's conversation; Ann may, to another queue, with a note.
    response = await client.post(
        f"/api/v1/conversations/{conversation.id}/transfer",
        json={"queue_id": other["id"]},
        headers=bob_headers,
    )
    assert response.status_code == 403
    response = await client.post(
        f"/api/v1/conversations/{conversation.id}/transfer",
        json={"queue_id": other["id"], "note": "Asks about an invoice"},
        headers=ann_headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["assignee_id"] is None
    await session.commit()  # ends the read snapshot: the server wrote since
    note = await session.scalar(select(Message).where(Message.kind == "note"))
    assert note.text == "Asks about an invoice" and note.author_id == ann.id
    entries = (
        await session.scalars(
            select(QueueEntry)
            .where(QueueEntry.conversation_id == conversation.id)
            .order_by(QueueEntry.entered_at)
        )
    ).all()
    assert [e.status for e in entries] == [EntryStatus.assigned, EntryStatus.waiting]

    # Straight to Bob, then a supervisor takes it over.
    response = await client.post(
        f"/api/v1/conversations/{conversation.id}/transfer",
        json={"user_id": str(bob.id), "note": "Yours"},
        headers=ann_headers,
    )
    assert response.status_code == 200 and response.json()["assignee_id"] == str(bob.id)
    await session.commit()
    supervisor, supervisor_headers = await _agent(session, "sue@example.com", role="supervisor")
    response = await client.post(
        f"/api/v1/conversations/{conversation.id}/takeover", headers=supervisor_headers
    )
    assert response.status_code == 200 and response.json()["assignee_id"] == str(supervisor.id)
    response = await client.post(f"/api/v1/conversations/{conversation.id}/takeover", headers=ann_headers)
    assert response.status_code == 403
    bad = await client.post(
        f"/api/v1/conversations/{conversation.id}/transfer",
        json={"queue_id": other["id"], "user_id": str(bob.id)},
        headers=supervisor_headers,
    )
    assert bad.status_code == 422 and "either" in bad.text


async def test_transfer_to_an_agent_at_capacity_is_refused(client, session, admin_headers):
    _account, conversation = await _conversation(session)
    ann, ann_headers = await _agent(session, "ann@example.com")
    bob, _bob_headers = await _agent(session, "bob@example.com")
    response = await client.put(
        f"/api/v1/routing/agents/{bob.id}/capacity", json={"capacity": 0}, headers=admin_headers
    )
    assert response.status_code == 204
    await client.post(f"/api/v1/conversations/{conversation.id}/accept", headers=ann_headers)
    response = await client.post(
        f"/api/v1/conversations/{conversation.id}/transfer",
        json={"user_id": str(bob.id)},
        headers=ann_headers,
    )
    assert response.status_code == 409 and "limit" in response.text
    await session.commit()
    assert (await session.get(Conversation, conversation.id, populate_existing=True)).assignee_id == ann.id


async def test_settings_pages_in_both_languages_and_a_queue_edited_by_form(client, session, admin):
    console = await signed_in(client, "admin@example.com")
    page = await client.get("/settings/routing")
    assert page.status_code == 200 and "Entry rules" in page.text
    created = await client.post(
        "/settings/routing/queues",
        data={"name": "VIP line", "strategy": "least_busy", "csrf_token": console.csrf},
    )
    assert created.status_code == 303
    queue_url = created.headers["location"]
    form = {
        "csrf_token": console.csrf,
        "name": "VIP line",
        "strategy": "least_busy",
        "is_active": "on",
        "timezone": "Asia/Shanghai",
        "day_mon": "09:00-12:00, 13:00-18:00",
        "day_sat": "22:00-02:00",
        "holidays": "2026-10-01\n2026-10-02",
        "off_hours_reply": "We open at nine.",
        "max_length": "50",
        "service_level_s": "30",
        "notice_interval_s": "90",
        "vip_tags": "vip, gold",
        "vip_attributes": "tier=gold",
    }
    saved = await client.post(queue_url, data=form)
    assert saved.status_code == 303, saved.text
    await session.commit()
    queue = await session.scalar(select(RoutingQueue).execution_options(populate_existing=True))
    assert queue.hours["days"]["mon"] == [["09:00", "12:00"], ["13:00", "18:00"]]
    assert queue.hours["holidays"] == ["2026-10-01", "2026-10-02"]
    assert queue.vip_rule == {"tags": ["vip", "gold"], "attributes": {"tier": "gold"}}
    assert (queue.max_length, queue.service_level_s, queue.off_hours_reply) == (50, 30, "We open at nine.")

    broken = await client.post(queue_url, data=form | {"day_tue": "9-5", "timezone": "Nowhere/Land"})
    assert broken.status_code == 422
    assert "time zone" in broken.text and "HH:MM" in broken.text
    await session.commit()
    still = await session.scalar(select(RoutingQueue).execution_options(populate_existing=True))
    assert still.hours["timezone"] == "Asia/Shanghai"

    await client.post("/settings/locale", data={"locale": "zh_CN", "next": "/", "csrf_token": console.csrf})
    zh = await client.get(queue_url)
    assert "工作时间" in zh.text and "溢出到队列" in zh.text
    board = await client.get("/routing")
    assert board.status_code == 200 and "监控大屏" in board.text and "VIP line" in board.text
