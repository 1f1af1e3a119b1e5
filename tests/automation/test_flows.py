"""Flows in-process: validation, dry runs, versions, and the VIN flow through the webhook and the worker."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from parley.automation.flows import service as flows
from parley.contacts.tags import tags_of
from parley.kit.types import utcnow
from parley.models import Contact, Conversation, FlowRun, Message, QueueEntry, TimelineEvent
from tests.automation.support import (
    _account,
    create_queue,
    create_rule,
    push,
    read_reply,
    serve_vin_service,
    text_xml,
    vin_flow,
)

VIN = "LSVAU2180N2183294"


@pytest.fixture
async def vin_service():
    service, stop = await serve_vin_service()
    try:
        yield service
    finally:
        await stop()


async def _flow(client, headers, definition, name="VIN lookup") -> dict:
    response = await client.post(
        "/api/v1/automation/flows", json={"name": name, "definition": definition}, headers=headers
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def _tick(app) -> None:
    await flows.tick(app.state.ctx)


async def _runs(client, headers, flow_id) -> list[dict]:
    return list((await client.get(f"/api/v1/automation/flows/{flow_id}/runs", headers=headers)).json())


class TestDefinitions:
    async def test_broken_references_are_refused_with_the_reason(self, client, admin_headers):
        definition = vin_flow("http://127.0.0.1:9/vin")
        definition["nodes"][0]["next"] = "nowhere"
        response = await client.post(
            "/api/v1/automation/flows", json={"name": "x", "definition": definition}, headers=admin_headers
        )
        assert response.status_code == 400
        assert "'ask_vin' points to 'nowhere'" in response.json()["detail"]
        assert (await client.get("/api/v1/automation/flows", headers=admin_headers)).json() == []

    async def test_yaml_in_yaml_out_and_live_validation(self, client, admin_headers):
        source = (
            "start: hello\n"
            "nodes:\n"
            "  - id: hello\n    type: send\n    reply: {text: 你好}\n    next: done\n"
            "  - id: done\n    type: end\n"
        )
        created = await client.post(
            "/api/v1/automation/flows", json={"name": "Hello", "source": source}, headers=admin_headers
        )
        assert created.status_code == 201, created.text
        exported = await client.get(
            f"/api/v1/automation/flows/{created.json()['id']}/export",
            params={"format": "yaml"},
            headers=admin_headers,
        )
        assert "id: hello" in exported.text and "你好" in exported.text
        check = await client.post(
            "/api/v1/automation/flows/validate",
            json={"source": "start: a\nnodes:\n  - id: a\n    type: teleport\n"},
            headers=admin_headers,
        )
        assert check.json()["valid"] is False
        assert any("teleport" in e or "type" in e for e in check.json()["errors"])


class TestDryRun:
    async def test_dry_run_shows_the_path_and_sends_nothing(self, client, session, admin_headers):
        flow = await _flow(client, admin_headers, vin_flow("http://127.0.0.1:9/vin"))
        result = (
            await client.post(
                f"/api/v1/automation/flows/{flow['id']}/dry-run",
                json={"replies": [VIN]},
                headers=admin_headers,
            )
        ).json()
        assert [s["node_id"] for s in result["steps"]] == [
            "ask_vin",
            "ask_vin",
            "lookup",
            "check",
            "tag",
            "found",
            "handoff",
        ]
        assert result["status"] == "handed_off"
        assert result["steps"][5]["detail"]["text"] == "您的Model Y已找到，正在为您转接重庆两江店顾问"
        assert result["contact"]["tags"] == ["车主"]
        assert (await session.scalars(select(Message))).all() == []

    async def test_dry_run_of_an_unsaved_edit_follows_the_other_branch(self, client, admin_headers):
        flow = await _flow(client, admin_headers, vin_flow("http://127.0.0.1:9/vin"))
        result = (
            await client.post(
                f"/api/v1/automation/flows/{flow['id']}/dry-run",
                json={"replies": ["WRONG"], "http_responses": {"lookup": {"found": False}}},
                headers=admin_headers,
            )
        ).json()
        assert [s["node_id"] for s in result["steps"]][-3:] == ["check", "unknown", "bye"]
        assert result["status"] == "finished"


class TestVinFlow:
    async def test_asks_calls_the_service_branches_and_hands_off(
        self, app, client, session, admin_headers, vin_service
    ):
        account = await _account(client, admin_headers, "wechat", mode="safe")
        queue_id = await create_queue(client, admin_headers)
        flow = await _flow(client, admin_headers, vin_flow(vin_service.url, queue_id=queue_id))
        await create_rule(
            client,
            admin_headers,
            account,
            name="VIN",
            keywords=[{"text": "车架号查询", "match": "exact"}],
            flow_id=flow["id"],
        )

        asked = read_reply(await push(client, account, text_xml("车架号查询", 1), mode="safe"), mode="safe")
        assert asked is not None and asked["Content"] == "请发送您的17位车架号（VIN）"
        [run] = await _runs(client, admin_headers, flow["id"])
        assert (run["status"], run["node_id"]) == ("waiting_reply", "ask_vin")

        # The customer's answer is taken by the waiting flow, not by keyword rules.
        answered = await push(client, account, text_xml(VIN, 2), mode="safe")
        assert answered.text == "success"
        await _tick(app)
        assert vin_service.calls == [{"vin": VIN}]

        detail = (await client.get(f"/api/v1/automation/runs/{run['id']}", headers=admin_headers)).json()
        assert detail["status"] == "handed_off"
        assert [(s["node_id"], s["type"]) for s in detail["steps"]] == [
            ("ask_vin", "ask"),
            ("ask_vin", "reply"),
            ("lookup", "http"),
            ("check", "branch"),
            ("tag", "set"),
            ("found", "send"),
            ("handoff", "handoff"),
        ]
        assert detail["variables"]["model"] == "Model Y"
        session.expire_all()
        conversation = await session.scalar(select(Conversation))
        assert (conversation.status, conversation.assignee_id) == ("open", None)
        # Nobody in the queue is online: the customer waits there, and was told so.
        waiting = await session.scalar(
            select(QueueEntry).where(QueueEntry.conversation_id == conversation.id)
        )
        assert waiting is not None and str(waiting.queue_id) == queue_id and waiting.status == "waiting"
        handoff = await session.scalar(select(TimelineEvent).where(TimelineEvent.type == "handoff"))
        assert (
            handoff is not None
            and handoff.data["queue_id"] == queue_id
            and handoff.data["note"] == f"VIN {VIN} (Model Y)"
        )
        contact = await session.scalar(select(Contact))
        assert [tag.name for tag, _link in await tags_of(session, contact.id)] == ["车主"]
        assert contact.attributes["vin"] == VIN
        sent = [
            m.text
            for m in (
                await session.scalars(
                    select(Message)
                    .where(Message.direction == "out", Message.kind != "note")
                    .order_by(Message.id)
                )
            ).all()
        ]
        # The flow's two messages, then routing tells the customer where they stand in the queue.
        assert sent[:2] == ["请发送您的17位车架号（VIN）", "您的Model Y已找到，正在为您转接重庆两江店顾问"]
        assert len(sent) == 3 and "queue" in sent[2]
        # The flow's note goes to the agents only, on the conversation.
        note = await session.scalar(select(Message).where(Message.kind == "note"))
        assert note is not None and note.text == f"VIN {VIN} (Model Y)"

    async def test_service_errors_are_retried_then_the_error_branch_is_taken(
        self, app, client, admin_headers, vin_service
    ):
        account = await _account(client, admin_headers, "wechat", mode="plain")
        queue_id = await create_queue(client, admin_headers)
        flow = await _flow(client, admin_headers, vin_flow(vin_service.url, queue_id=queue_id))
        await create_rule(
            client, admin_headers, account, name="VIN", keywords=[{"text": "vin"}], flow_id=flow["id"]
        )
        vin_service.failures_left = 1
        await push(client, account, text_xml("vin", 1), mode="plain")
        await push(client, account, text_xml(VIN, 2), mode="plain")
        await _tick(app)
        [run] = await _runs(client, admin_headers, flow["id"])
        detail = (await client.get(f"/api/v1/automation/runs/{run['id']}", headers=admin_headers)).json()
        lookup = next(s for s in detail["steps"] if s["node_id"] == "lookup")
        assert (lookup["type"], lookup["detail"]["attempts"]) == ("http", 2)
        assert detail["status"] == "handed_off"

        vin_service.failures_left = 10
        await push(client, account, text_xml("vin", 3, openid="oOther"), mode="plain")
        await push(client, account, text_xml(VIN, 4, openid="oOther"), mode="plain")
        await _tick(app)
        second = next(r for r in await _runs(client, admin_headers, flow["id"]) if r["id"] != run["id"])
        detail = (await client.get(f"/api/v1/automation/runs/{second['id']}", headers=admin_headers)).json()
        assert [s["node_id"] for s in detail["steps"]][-3:] == ["lookup", "sorry", "bye"]
        assert detail["status"] == "finished"

    async def test_an_unanswered_question_times_out_to_its_branch(self, app, client, session, admin_headers):
        account = await _account(client, admin_headers, "wechat", mode="plain")
        flow = await _flow(client, admin_headers, vin_flow("http://127.0.0.1:9/vin"))
        await create_rule(
            client, admin_headers, account, name="VIN", keywords=[{"text": "vin"}], flow_id=flow["id"]
        )
        await push(client, account, text_xml("vin", 1), mode="plain")
        await _tick(app)
        [run] = await _runs(client, admin_headers, flow["id"])
        assert run["status"] == "waiting_reply"  # not due yet
        await session.execute(update(FlowRun).values(wake_at=utcnow() - timedelta(seconds=1)))
        await session.commit()
        await _tick(app)
        [run] = await _runs(client, admin_headers, flow["id"])
        assert run["status"] == "finished"
        detail = (await client.get(f"/api/v1/automation/runs/{run['id']}", headers=admin_headers)).json()
        assert [s["type"] for s in detail["steps"]] == ["ask", "timeout", "end"]


class TestVersions:
    async def test_new_version_serves_new_runs_while_old_runs_finish_on_theirs(
        self, app, client, admin_headers, vin_service
    ):
        account = await _account(client, admin_headers, "wechat", mode="plain")
        queue_id = await create_queue(client, admin_headers)
        flow = await _flow(
            client, admin_headers, vin_flow(vin_service.url, question="v1: 请发送VIN", queue_id=queue_id)
        )
        await create_rule(
            client, admin_headers, account, name="VIN", keywords=[{"text": "vin"}], flow_id=flow["id"]
        )
        first = read_reply(
            await push(client, account, text_xml("vin", 1, openid="oOld"), mode="plain"), mode="plain"
        )
        assert first is not None and first["Content"] == "v1: 请发送VIN"

        edited = vin_flow(vin_service.url, question="v2: 请发送车架号", queue_id=queue_id)
        edited["nodes"][4]["reply"]["text"] = "v2: 找到了{{model}}"
        response = await client.post(
            f"/api/v1/automation/flows/{flow['id']}/versions",
            json={"definition": edited},
            headers=admin_headers,
        )
        assert response.status_code == 201 and response.json()["current_version"] == 2

        second = read_reply(
            await push(client, account, text_xml("vin", 2, openid="oNew"), mode="plain"), mode="plain"
        )
        assert second is not None and second["Content"] == "v2: 请发送车架号"
        await push(client, account, text_xml(VIN, 3, openid="oOld"), mode="plain")
        await _tick(app)
        runs = {r["version"]: r for r in await _runs(client, admin_headers, flow["id"])}
        old = (await client.get(f"/api/v1/automation/runs/{runs[1]['id']}", headers=admin_headers)).json()
        found = next(s for s in old["steps"] if s["node_id"] == "found")
        assert found["detail"]["text"] == "您的Model Y已找到，正在为您转接重庆两江店顾问"
        assert old["status"] == "handed_off" and runs[2]["status"] == "waiting_reply"
