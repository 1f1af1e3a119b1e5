"""The simulated Graph API: paths, envelopes and send rules (PROTOCOLS.md 2.5–2.7)."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from tests.sandbox.whatsapp.whatsapp_sandbox_support import (
    ANA,
    AUTH,
    GRAPH,
    NUMBER,
    PYWA,
    WABA,
    ZOE,
    act,
    send_text,
)

TEMPLATE_EXAMPLES = sorted(
    (path.name, name) for path in (PYWA / "templates").glob("*.json") for name in json.loads(path.read_text())
)


def graph_error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    error = body["error"]
    assert set(error) >= {"message", "type", "code", "fbtrace_id"}
    assert error["message"].startswith(f"(#{error['code']})")
    return error  # type: ignore[no-any-return]


class TestAuth:
    async def test_missing_token(self, sim: httpx.AsyncClient) -> None:
        response = await sim.post(f"{GRAPH}/{NUMBER}/messages", json={})
        assert response.status_code == 401
        assert graph_error(response)["code"] == 190

    async def test_wrong_token(self, sim: httpx.AsyncClient) -> None:
        response = await sim.post(
            f"{GRAPH}/{NUMBER}/messages", json={}, headers={"Authorization": "Bearer nope"}
        )
        assert (response.status_code, graph_error(response)["code"], graph_error(response)["type"]) == (
            401,
            190,
            "OAuthException",
        )

    async def test_someone_elses_number(self, sim: httpx.AsyncClient) -> None:
        response = await sim.post(f"{GRAPH}/999/messages", json={}, headers=AUTH)
        error = graph_error(response)
        assert (response.status_code, error["code"], error["error_subcode"]) == (400, 100, 33)

    async def test_bad_version(self, sim: httpx.AsyncClient) -> None:
        response = await sim.post(f"/latest/{NUMBER}/messages", json={}, headers=AUTH)
        assert graph_error(response)["code"] == 100


class TestSendRules:
    async def test_success_shape(self, sim: httpx.AsyncClient) -> None:
        await act(sim, ANA, text="hi")
        response = await send_text(sim, "+" + ANA["wa_id"], "hello")
        body = response.json()
        assert body["messaging_product"] == "whatsapp"
        assert body["contacts"] == [{"input": "+" + ANA["wa_id"], "wa_id": ANA["wa_id"]}]
        assert body["messages"][0]["id"].startswith("wamid.")
        assert "message_status" not in body["messages"][0]

    async def test_bsuid_recipient(self, sim: httpx.AsyncClient) -> None:
        await act(sim, ZOE, text="hi")
        response = await sim.post(
            f"{GRAPH}/{NUMBER}/messages",
            json={
                "messaging_product": "whatsapp",
                "recipient": ZOE["bsuid"],
                "type": "text",
                "text": {"body": "hey"},
            },
            headers=AUTH,
        )
        assert response.json()["contacts"] == [{"input": ZOE["bsuid"], "user_id": ZOE["bsuid"]}]

    @pytest.mark.parametrize(
        ("body", "code"),
        [
            ({"to": ANA["wa_id"], "type": "text", "text": {"body": "x"}}, 100),
            ({"messaging_product": "whatsapp", "type": "text", "text": {"body": "x"}}, 100),
            ({"messaging_product": "whatsapp", "to": ANA["wa_id"], "type": "text"}, 131008),
            (
                {"messaging_product": "whatsapp", "to": ANA["wa_id"], "type": "hologram", "hologram": {}},
                131051,
            ),
            (
                {
                    "messaging_product": "whatsapp",
                    "to": ANA["wa_id"],
                    "type": "text",
                    "text": {"body": "x" * 4097},
                },
                100,
            ),
            (
                {"messaging_product": "whatsapp", "to": ANA["wa_id"], "type": "image", "image": {"id": "1"}},
                100,
            ),
            (
                {
                    "messaging_product": "whatsapp",
                    "to": ANA["wa_id"],
                    "type": "interactive",
                    "interactive": {
                        "type": "button",
                        "body": {"text": "?"},
                        "action": {"buttons": [{"type": "reply", "reply": {"id": "a", "title": "t" * 21}}]},
                    },
                },
                131009,
            ),
        ],
    )
    async def test_bad_requests(self, sim: httpx.AsyncClient, body: dict[str, Any], code: int) -> None:
        await act(sim, ANA, text="hi")
        response = await sim.post(f"{GRAPH}/{NUMBER}/messages", json=body, headers=AUTH)
        assert response.status_code == 400
        assert graph_error(response)["code"] == code

    async def test_invalid_json(self, sim: httpx.AsyncClient) -> None:
        response = await sim.post(
            f"{GRAPH}/{NUMBER}/messages",
            content=b"{oops",
            headers=AUTH | {"Content-Type": "application/json"},
        )
        assert graph_error(response)["code"] == 100

    async def test_window_is_measured_on_the_simulator_clock(self, sim: httpx.AsyncClient) -> None:
        await act(sim, ANA, text="hi")
        await sim.post("/_sandbox/clock", json={"advance_s": 23 * 3600})
        assert (await send_text(sim, ANA["wa_id"], "still open")).status_code == 200
        await sim.post("/_sandbox/clock", json={"advance_s": 3600})
        response = await send_text(sim, ANA["wa_id"], "closed")
        assert graph_error(response)["code"] == 131047

    @pytest.mark.parametrize(
        ("status", "code"), [("PAUSED", 132015), ("DISABLED", 132016), ("PENDING", 132001)]
    )
    async def test_template_states(self, sim: httpx.AsyncClient, status: str, code: int) -> None:
        await sim.post(
            f"/_sandbox/accounts/{WABA}/templates",
            json={
                "name": "state_test",
                "language": "en",
                "category": "MARKETING",
                "components": [{"type": "BODY", "text": "Hi"}],
                "status": status,
            },
        )
        response = await sim.post(
            f"{GRAPH}/{NUMBER}/messages",
            json={
                "messaging_product": "whatsapp",
                "to": ANA["wa_id"],
                "type": "template",
                "template": {"name": "state_test", "language": {"code": "en"}},
            },
            headers=AUTH,
        )
        assert graph_error(response)["code"] == code

    async def test_template_language_must_match(self, sim: httpx.AsyncClient) -> None:
        response = await sim.post(
            f"{GRAPH}/{NUMBER}/messages",
            json={
                "messaging_product": "whatsapp",
                "to": ANA["wa_id"],
                "type": "template",
                "template": {"name": "hello_world", "language": {"code": "de"}},
            },
            headers=AUTH,
        )
        assert graph_error(response)["code"] == 132001

    async def test_rate_limit_status(self, sim: httpx.AsyncClient) -> None:
        await act(sim, ANA, text="hi")
        await sim.post(f"/_sandbox/accounts/{WABA}/limits", json={"rate_per_s": 2})
        codes = [(await send_text(sim, ANA["wa_id"], str(i))).status_code for i in range(3)]
        assert codes == [200, 200, 429]

    async def test_injected_5xx_and_delay(self, sim: httpx.AsyncClient) -> None:
        await act(sim, ANA, text="hi")
        await sim.post(
            f"/_sandbox/accounts/{WABA}/limits",
            json={
                "faults": [
                    {"count": 1, "http_status": 503},
                    {"count": 1, "code": 131000},
                    {"count": 1, "delay_s": 0.01},
                ]
            },
        )
        first = await send_text(sim, ANA["wa_id"], "1")
        assert (first.status_code, first.headers["content-type"].split(";")[0]) == (503, "text/html")
        second = await send_text(sim, ANA["wa_id"], "2")
        assert (second.status_code, graph_error(second)["code"], graph_error(second)["is_transient"]) == (
            500,
            131000,
            True,
        )
        assert (await send_text(sim, ANA["wa_id"], "3")).status_code == 200
        assert (await send_text(sim, ANA["wa_id"], "4")).status_code == 200

    async def test_mark_read_of_unknown_message(self, sim: httpx.AsyncClient) -> None:
        response = await sim.post(
            f"{GRAPH}/{NUMBER}/messages",
            json={"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.nope"},
            headers=AUTH,
        )
        assert graph_error(response)["code"] == 100


class TestRecord:
    async def test_filters_and_clear(self, sim: httpx.AsyncClient) -> None:
        await act(sim, ANA, text="hi")
        await act(sim, ZOE, text="hi")
        await send_text(sim, ANA["wa_id"], "a", "k1")
        mark = time.time()
        await send_text(sim, ZOE["bsuid"], "b", "k2")
        await send_text(sim, ANA["wa_id"], "a", "k1")
        everything = (await sim.get("/_sandbox/record")).json()
        assert [(r["idempotency_key"], r["duplicate"]) for r in everything] == [
            ("k1", False),
            ("k2", False),
            ("k1", True),
        ]
        assert len((await sim.get("/_sandbox/record", params={"to": ANA["wa_id"]})).json()) == 2
        assert len((await sim.get("/_sandbox/record", params={"to": ZOE["wa_id"]})).json()) == 1
        assert len((await sim.get("/_sandbox/record", params={"since": mark})).json()) == 2
        stats = (await sim.get("/_sandbox/stats")).json()
        assert (stats["counts"]["accepted"], stats["counts"]["duplicates"]) == (3, 1)
        assert sum(stats["per_second"].values()) == 3
        await sim.delete("/_sandbox/record")
        assert (await sim.get("/_sandbox/record")).json() == []
        await send_text(sim, ANA["wa_id"], "a", "k1")
        assert (await sim.get("/_sandbox/record")).json()[0]["duplicate"] is False

    async def test_header_key_when_no_callback_data(self, sim: httpx.AsyncClient) -> None:
        await act(sim, ANA, text="hi")
        await sim.post(
            f"{GRAPH}/{NUMBER}/messages",
            json={"messaging_product": "whatsapp", "to": ANA["wa_id"], "type": "text", "text": {"body": "x"}},
            headers=AUTH | {"X-Parley-Idempotency-Key": "hdr-1"},
        )
        [entry] = (await sim.get("/_sandbox/record")).json()
        assert (entry["idempotency_key"], entry["idempotency_header"], entry["biz_opaque_callback_data"]) == (
            "hdr-1",
            "hdr-1",
            None,
        )


class TestTemplates:
    @pytest.mark.parametrize(("file", "name"), TEMPLATE_EXAMPLES)
    async def test_pywa_examples_are_accepted(self, sim: httpx.AsyncClient, file: str, name: str) -> None:
        example = json.loads((PYWA / "templates" / file).read_text())[name]
        response = await sim.post(f"{GRAPH}/{WABA}/message_templates", json=example, headers=AUTH)
        assert response.status_code == 200, response.text
        assert response.json()["category"] == example["category"]
        listed = (
            await sim.get(f"{GRAPH}/{WABA}/message_templates", params={"name": example["name"]}, headers=AUTH)
        ).json()
        assert listed["data"][0]["components"] == example["components"]

    async def test_bad_template(self, sim: httpx.AsyncClient) -> None:
        response = await sim.post(
            f"{GRAPH}/{WABA}/message_templates",
            json={"name": "Bad Name", "language": "en", "category": "UTILITY", "components": []},
            headers=AUTH,
        )
        assert graph_error(response)["code"] == 100

    async def test_paging(self, sim: httpx.AsyncClient) -> None:
        first = (await sim.get(f"{GRAPH}/{WABA}/message_templates", params={"limit": 2}, headers=AUTH)).json()
        assert [t["name"] for t in first["data"]] == ["hello_world", "order_update"]
        second = (await sim.get(first["paging"]["next"], headers=AUTH)).json()
        assert [t["name"] for t in second["data"]] == ["seasonal_offer"]
        assert "next" not in second["paging"]


class TestMedia:
    async def test_upload_lookup_download_delete(self, sim: httpx.AsyncClient) -> None:
        upload = await sim.post(
            f"{GRAPH}/{NUMBER}/media",
            data={"messaging_product": "whatsapp", "type": "application/pdf"},
            files={"file": ("a.pdf", b"%PDF-1.4 test", "application/pdf")},
            headers=AUTH,
        )
        media_id = upload.json()["id"]
        info = (await sim.get(f"{GRAPH}/{media_id}", headers=AUTH)).json()
        assert (info["mime_type"], info["file_size"], info["messaging_product"]) == (
            "application/pdf",
            13,
            "whatsapp",
        )
        assert (await sim.get(info["url"])).status_code == 401  # the download needs the Bearer token too
        assert (await sim.get(info["url"], headers=AUTH)).content == b"%PDF-1.4 test"
        forged = info["url"].rsplit("hash=", 1)[0] + "hash=forged"
        assert (await sim.get(forged, headers=AUTH)).status_code == 404
        assert (await sim.delete(f"{GRAPH}/{media_id}", headers=AUTH)).json() == {"success": True}
        assert graph_error(await sim.get(f"{GRAPH}/{media_id}", headers=AUTH))["code"] == 100

    async def test_upload_needs_messaging_product(self, sim: httpx.AsyncClient) -> None:
        response = await sim.post(
            f"{GRAPH}/{NUMBER}/media", files={"file": ("a.txt", b"x", "text/plain")}, headers=AUTH
        )
        assert graph_error(response)["code"] == 100


class TestControl:
    async def test_phone_page(self, sim: httpx.AsyncClient) -> None:
        page = await sim.get("/")
        assert page.status_code == 200 and "WhatsApp sandbox" in page.text
        script = await sim.get("/_sandbox/static/phone.js")
        assert script.status_code == 200 and "setInterval(refresh, 1000)" in script.text

    async def test_conversation_for_the_page(self, sim: httpx.AsyncClient) -> None:
        await act(sim, ANA, text="hi")
        await sim.post(
            f"{GRAPH}/{NUMBER}/messages",
            json={
                "messaging_product": "whatsapp",
                "to": ANA["wa_id"],
                "type": "template",
                "template": {
                    "name": "order_update",
                    "language": {"code": "en_US"},
                    "components": [
                        {
                            "type": "body",
                            "parameters": [
                                {"type": "text", "text": "Ana"},
                                {"type": "text", "text": "A-1"},
                                {"type": "text", "text": "shipped"},
                            ],
                        },
                        {
                            "type": "button",
                            "sub_type": "quick_reply",
                            "index": "0",
                            "parameters": [{"type": "payload", "payload": "AGENT"}],
                        },
                    ],
                },
            },
            headers=AUTH,
        )
        await sim.post("/_sandbox/idle")
        chat = (await sim.get(f"/_sandbox/accounts/{WABA}/users/{ANA['wa_id']}/conversation")).json()
        assert chat["window_open"] is True
        incoming, template = chat["items"]
        assert (incoming["direction"], incoming["text"]) == ("in", "hi")
        assert (template["direction"], template["text"], template["status"]) == (
            "out",
            "Hi Ana, your order A-1 is now shipped.",
            "read",
        )
        assert template["quick_replies"][0] == {"payload": "AGENT", "title": "Talk to an agent"}

    async def test_strict_control_shapes(self, sim: httpx.AsyncClient) -> None:
        response = await sim.post(f"/_sandbox/accounts/{WABA}/limits", json={"rate_per_sec": 5})
        assert response.status_code == 422
        assert (
            await sim.post("/_sandbox/accounts/999/users", json={"name": "x", "wa_id": "123456"})
        ).status_code == 404
        assert (
            await sim.post(f"/_sandbox/accounts/{WABA}/users/000000/actions", json={"type": "text"})
        ).status_code == 404

    async def test_users_and_state(self, sim: httpx.AsyncClient) -> None:
        users = (await sim.get(f"/_sandbox/accounts/{WABA}/users")).json()
        assert [u["wa_id"] for u in users] == [ANA["wa_id"], ZOE["wa_id"]]
        state = (await sim.get("/_sandbox/state")).json()
        assert state["accounts"][0]["business_account_id"] == WABA
        assert state["accounts"][0]["limits"]["rate_per_s"] == 80
