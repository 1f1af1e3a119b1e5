"""What the simulated platform sends Parley: webhook shape, signature, retries, statuses (PROTOCOLS.md 2.1–2.3)."""

from __future__ import annotations

import hashlib
import hmac
import json

import httpx

from parley.channels.base import InboundKind
from parley.sandbox.whatsapp.testing import WebhookReceiver
from tests.sandbox.whatsapp.whatsapp_sandbox_support import (
    ANA,
    APP_SECRET,
    AUTH,
    GRAPH,
    NUMBER,
    PYWA,
    WABA,
    ZOE,
    act,
    pywa,
    send_text,
)


class TestUserMessages:
    async def test_payload_is_the_platform_shape(
        self, sim: httpx.AsyncClient, receiver: WebhookReceiver
    ) -> None:
        result = await act(sim, ANA, text="Does it come in another color?")
        payload = result["payload"]
        assert payload["object"] == "whatsapp_business_account"
        [entry] = payload["entry"]
        [change] = entry["changes"]
        assert (entry["id"], change["field"]) == (WABA, "messages")
        value = change["value"]
        assert value["messaging_product"] == "whatsapp"
        assert value["metadata"] == {"display_phone_number": "15550001111", "phone_number_id": NUMBER}
        assert value["contacts"] == [
            {"profile": {"name": ANA["name"]}, "wa_id": ANA["wa_id"], "user_id": ANA["bsuid"]}
        ]
        [message] = value["messages"]
        assert message["from"] == ANA["wa_id"]
        assert message["id"] == result["wamid"] and message["id"].startswith("wamid.")
        assert message["timestamp"].isdigit()
        assert (message["type"], message["text"]) == ("text", {"body": "Does it come in another color?"})
        assert result["delivery"]["delivered"] is True

    async def test_signed_over_the_escaped_bytes(
        self, sim: httpx.AsyncClient, receiver: WebhookReceiver
    ) -> None:
        await act(sim, ANA, text="Olá, café ✓ 你好")
        [request] = receiver.requests
        body = request["body"]
        assert b"\\u00e9" in body and "é".encode() not in body
        expected = "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert request["headers"]["x-hub-signature-256"] == expected
        assert receiver.events[0].text == "Olá, café ✓ 你好"

    async def test_username_user_without_phone(
        self, sim: httpx.AsyncClient, receiver: WebhookReceiver
    ) -> None:
        result = await act(sim, ZOE, text="hi from a username")
        value = result["payload"]["entry"][0]["changes"][0]["value"]
        assert "wa_id" not in value["contacts"][0]
        assert value["contacts"][0]["profile"]["username"] == "zoe"
        assert "from" not in value["messages"][0]
        sender = receiver.events[0].sender
        assert (sender.id, sender.phone, sender.username) == (ZOE["bsuid"], None, "zoe")

    async def test_media_location_reaction_button(
        self, sim: httpx.AsyncClient, receiver: WebhookReceiver
    ) -> None:
        first = await act(sim, ANA, type="image", caption="look")
        await act(sim, ANA, type="document", filename="receipt.pdf")
        await act(sim, ANA, type="voice")
        await act(sim, ANA, type="location", latitude=52.52, longitude=13.405, name="Alexanderplatz")
        await act(sim, ANA, type="reaction", message_id=first["wamid"], emoji="❤️")
        await act(sim, ANA, type="reaction", message_id=first["wamid"])
        await act(sim, ANA, type="button", payload="STOP_PROMOS", text="Stop promotions")
        await act(sim, ANA, type="contacts")
        await act(sim, ANA, type="poll")
        types = [(e.type, e.text) for e in receiver.events]
        assert types == [
            ("image", "look"),
            ("file", None),
            ("voice", None),
            ("location", None),
            ("reaction", "❤️"),
            ("reaction", None),
            ("button", "Stop promotions"),
            ("contacts", "Ada Lovelace"),
            ("unsupported", None),
        ]
        assert receiver.events[1].media is not None and receiver.events[1].media.filename == "receipt.pdf"
        assert receiver.events[5].data["removed"] is True

    async def test_window_opens_with_the_users_message(self, sim: httpx.AsyncClient) -> None:
        assert (await send_text(sim, ANA["wa_id"], "hello?")).json()["error"]["code"] == 131047
        await act(sim, ANA, text="hi")
        assert (await send_text(sim, ANA["wa_id"], "hello!")).status_code == 200


class TestRetries:
    async def test_failing_receiver_gets_the_same_message_again(
        self, sim: httpx.AsyncClient, receiver: WebhookReceiver
    ) -> None:
        receiver.fail_next = 2
        result = await act(sim, ANA, text="are you there?")
        attempts = result["delivery"]["attempts"]
        assert [a["status_code"] for a in attempts] == [500, 500, 200]
        assert result["delivery"]["delivered"] is True
        bodies = {r["body"] for r in receiver.requests}
        assert len(receiver.requests) == 3 and len(bodies) == 1
        assert result["wamid"] in bodies.pop().decode()
        assert [e.platform_message_id for e in receiver.events] == [result["wamid"]]

    async def test_gives_up_after_the_schedule(
        self, sim: httpx.AsyncClient, receiver: WebhookReceiver
    ) -> None:
        receiver.fail_next = 10
        result = await act(sim, ANA, text="hello")
        assert result["delivery"]["delivered"] is False
        assert len(result["delivery"]["attempts"]) == 4  # first try + the three configured retries
        log = (await sim.get("/_sandbox/webhooks", params={"kind": "message"})).json()
        assert log[-1]["body"]["entry"][0]["changes"][0]["value"]["messages"][0]["id"] == result["wamid"]

    async def test_unreachable_receiver(self, sim: httpx.AsyncClient) -> None:
        await sim.patch(f"/_sandbox/accounts/{WABA}", json={"webhook_url": "http://127.0.0.1:9/webhook"})
        result = await act(sim, ANA, text="hello")
        assert result["delivery"]["delivered"] is False
        assert all("error" in a for a in result["delivery"]["attempts"])

    async def test_bad_signatures_are_refused_and_retried(
        self, sim: httpx.AsyncClient, receiver: WebhookReceiver
    ) -> None:
        body = pywa("message.json")["text"]
        bad = (
            await sim.post(
                f"/_sandbox/accounts/{WABA}/webhooks/raw", json={"body": body, "signature": "invalid"}
            )
        ).json()
        assert {a["status_code"] for a in bad["delivery"]["attempts"]} == {403}
        missing = (
            await sim.post(
                f"/_sandbox/accounts/{WABA}/webhooks/raw", json={"body": body, "signature": "missing"}
            )
        ).json()
        assert {a["status_code"] for a in missing["delivery"]["attempts"]} == {401}
        assert receiver.events == []
        good = (await sim.post(f"/_sandbox/accounts/{WABA}/webhooks/raw", json={"body": body})).json()
        assert good["delivery"]["delivered"] is True
        assert receiver.events[0].text == "Body Text"

    async def test_replay_is_deduplicated_downstream(
        self, sim: httpx.AsyncClient, receiver: WebhookReceiver
    ) -> None:
        body = pywa("message_status.json")["read"]
        for _ in range(2):
            await sim.post(f"/_sandbox/accounts/{WABA}/webhooks/raw", json={"body": body})
        assert len(receiver.requests) == 2
        assert [e.dedupe_key for e in receiver.events] == ["status:wamid.xyzxyz:read"]


class TestBatches:
    async def test_one_change_with_messages_and_statuses(
        self, sim: httpx.AsyncClient, receiver: WebhookReceiver
    ) -> None:
        await act(sim, ANA, text="open the window")
        await sim.post(f"/_sandbox/accounts/{WABA}/limits", json={"status_mode": "manual"})
        sent = (await send_text(sim, ANA["wa_id"], "our reply", "k-1")).json()["messages"][0]["id"]
        await sim.post("/_sandbox/idle")
        receiver.reset()
        result = (
            await sim.post(
                f"/_sandbox/accounts/{WABA}/batch",
                json={
                    "items": [
                        {"user": ANA["wa_id"], "action": {"type": "text", "text": "one"}},
                        {"user": ZOE["wa_id"], "action": {"type": "text", "text": "two"}},
                        {"status": {"wamid": sent, "status": "delivered"}},
                        {"status": {"wamid": sent, "status": "read"}},
                    ]
                },
            )
        ).json()
        [entry] = result["payload"]["entry"]
        [change] = entry["changes"]
        assert len(change["value"]["messages"]) == 2 and len(change["value"]["statuses"]) == 2
        assert len(change["value"]["contacts"]) == 2
        assert [(e.kind, e.type) for e in receiver.events] == [
            (InboundKind.message, "text"),
            (InboundKind.message, "text"),
            (InboundKind.status, "delivered"),
            (InboundKind.status, "read"),
        ]
        assert [e.sender.id for e in receiver.events[:2]] == [ANA["bsuid"], ZOE["bsuid"]]

    async def test_entry_per_item(self, sim: httpx.AsyncClient, receiver: WebhookReceiver) -> None:
        result = (
            await sim.post(
                f"/_sandbox/accounts/{WABA}/batch",
                json={
                    "layout": "entry_per_item",
                    "items": [{"user": ANA["wa_id"], "action": {"text": f"m{i}"}} for i in range(3)],
                },
            )
        ).json()
        assert len(result["payload"]["entry"]) == 3
        assert [e.text for e in receiver.events] == ["m0", "m1", "m2"]


class TestStatuses:
    async def test_auto_statuses(self, sim: httpx.AsyncClient, receiver: WebhookReceiver) -> None:
        await act(sim, ANA, text="hi")
        response = await send_text(sim, ANA["wa_id"], "hello", "job-42")
        wamid = response.json()["messages"][0]["id"]
        await sim.post("/_sandbox/idle")
        statuses = [e for e in receiver.events if e.kind is InboundKind.status]
        assert [(e.type, e.platform_message_id, e.data["biz_opaque_callback_data"]) for e in statuses] == [
            ("sent", wamid, "job-42"),
            ("delivered", wamid, "job-42"),
            ("read", wamid, "job-42"),
        ]
        assert statuses[0].data["pricing"]["category"] == "service"
        [sent] = (await sim.get("/_sandbox/record")).json()
        assert [s["status"] for s in sent["statuses"]] == ["sent", "delivered", "read"]

    async def test_manual_statuses_and_failure(
        self, sim: httpx.AsyncClient, receiver: WebhookReceiver
    ) -> None:
        await act(sim, ANA, text="hi")
        await sim.post(f"/_sandbox/accounts/{WABA}/limits", json={"status_mode": "manual"})
        wamid = (await send_text(sim, ANA["wa_id"], "hello")).json()["messages"][0]["id"]
        await sim.post("/_sandbox/idle")
        assert [e.type for e in receiver.events if e.kind is InboundKind.status] == ["sent"]
        response = await sim.post(
            f"/_sandbox/messages/{wamid}/status",
            json={"status": "failed", "error": {"code": 131047, "details": "window closed meanwhile"}},
        )
        assert response.json()["delivery"]["delivered"] is True
        failed = receiver.events[-1]
        assert failed.status is not None
        assert (failed.type, failed.status.error_code, failed.status.error_title) == (
            "failed",
            131047,
            "Re-engagement message",
        )
        assert failed.status.error_detail == "window closed meanwhile"

    async def test_undeliverable_as_a_status(self, sim: httpx.AsyncClient, receiver: WebhookReceiver) -> None:
        await sim.post(f"/_sandbox/accounts/{WABA}/limits", json={"undeliverable": "status"})
        response = await sim.post(
            f"{GRAPH}/{NUMBER}/messages",
            json={
                "messaging_product": "whatsapp",
                "to": "15550009999",
                "type": "template",
                "template": {"name": "hello_world", "language": {"code": "en_US"}},
            },
            headers=AUTH,
        )
        assert response.status_code == 200
        await sim.post("/_sandbox/idle")
        [failed] = [e for e in receiver.events if e.kind is InboundKind.status]
        assert failed.status is not None and failed.status.error_code == 131026

    async def test_template_created_through_graph_is_announced(
        self, sim: httpx.AsyncClient, receiver: WebhookReceiver
    ) -> None:
        example = pywa("templates/buttons.examples.json")["seasonal_promotion"]
        response = await sim.post(f"{GRAPH}/{WABA}/message_templates", json=example, headers=AUTH)
        assert response.json()["status"] == "APPROVED"
        await sim.post("/_sandbox/idle")
        [event] = receiver.events
        assert (event.type, event.data["event"], event.data["value"]["message_template_name"]) == (
            "template_status",
            "APPROVED",
            "seasonal_promotion",
        )


class TestHandshake:
    async def test_verify_webhook(self, sim: httpx.AsyncClient) -> None:
        result = (await sim.post(f"/_sandbox/accounts/{WABA}/verify-webhook")).json()
        assert result["ok"] is True
        assert result["body"] == result["challenge"]
        assert result["content_type"].startswith("text/plain")

    async def test_wrong_token_is_refused(self, sim: httpx.AsyncClient) -> None:
        result = (
            await sim.post(f"/_sandbox/accounts/{WABA}/verify-webhook", json={"verify_token": "guess"})
        ).json()
        assert (result["ok"], result["status_code"]) == (False, 403)

    async def test_wrong_mode_is_refused(self, sim: httpx.AsyncClient) -> None:
        result = (
            await sim.post(f"/_sandbox/accounts/{WABA}/verify-webhook", json={"mode": "unsubscribe"})
        ).json()
        assert (result["ok"], result["status_code"]) == (False, 403)


async def test_every_pywa_update_passes_through_the_simulator(
    sim: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    count = 0
    for path in sorted(p for p in PYWA.glob("*.json") if p.name != "hmac_test_vector.json"):
        for body in json.loads(path.read_text()).values():
            result = (await sim.post(f"/_sandbox/accounts/{WABA}/webhooks/raw", json={"body": body})).json()
            assert result["delivery"]["delivered"] is True, path.name
            count += 1
    assert count == len(receiver.requests) > 50
