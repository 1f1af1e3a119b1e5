"""The simulator pushes like the platform: signed, encrypted, retried; and keeps an exact record."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from parley.channels.base import InboundEvent, OutboundMessage, OutboundType
from parley.channels.wechat.xml import parse_body
from parley.sandbox.wechat.app import create_app
from parley.sandbox.wechat.state import DEFAULT_TEMPLATES
from tests.channels.wechat.helpers import Receiver, act, adapter_for, add_user, register


async def _setup(
    sim: httpx.AsyncClient, receiver: Receiver, receiver_url: str, mode: str = "plain", **limits: object
) -> tuple[str, str]:
    ctx = await register(sim, mode=mode, webhook_url=receiver_url)
    receiver.reset(adapter_for(ctx))
    if limits:
        assert (
            await sim.post(f"/_sandbox/accounts/{ctx.external_id}/limits", json=limits)
        ).status_code == 200
    user = await add_user(sim, ctx.external_id)
    return ctx.external_id, user["openid"]


def _echo(event: InboundEvent) -> OutboundMessage:
    return OutboundMessage(
        to=event.sender.id, type=OutboundType.text, text=f"收到：{event.text}", idempotency_key="p"
    )


class TestDelivery:
    @pytest.mark.parametrize("mode", ["plain", "compatible", "safe"])
    async def test_signed_push_reaches_the_adapter(
        self, sim: httpx.AsyncClient, receiver: Receiver, receiver_url: str, mode: str
    ) -> None:
        app_id, openid = await _setup(sim, receiver, receiver_url, mode)
        result = await act(sim, app_id, openid, type="text", content="你好")
        assert result["delivered"] is True
        assert [a["status"] for a in result["attempts"]] == [200]
        assert receiver.errors == []
        [event] = receiver.events.values()
        assert (event.type, event.text, event.sender.id) == ("text", "你好", openid)
        assert event.platform_message_id == result["msg_id"]
        query = receiver.hits[0]["query"]
        assert query["openid"] == openid
        assert ("msg_signature" in query) is (mode != "plain")
        body = parse_body(receiver.hits[0]["body"])
        assert ("Encrypt" in body) is (mode != "plain")
        assert ("Content" in body) is (mode != "safe")

    @pytest.mark.parametrize("mode", ["plain", "safe"])
    async def test_passive_reply_is_decoded_and_shown(
        self, sim: httpx.AsyncClient, receiver: Receiver, receiver_url: str, mode: str
    ) -> None:
        app_id, openid = await _setup(sim, receiver, receiver_url, mode)
        receiver.reply = _echo
        result = await act(sim, app_id, openid, type="text", content="在吗")
        assert result["reply"] == {"type": "text", "content": "收到：在吗"}
        assert result["reply_error"] is None
        conversation = (await sim.get(f"/_sandbox/accounts/{app_id}/users/{openid}/conversation")).json()
        assert [(e["direction"], e["via"], e["type"]) for e in conversation["entries"]] == [
            ("in", "user", "text"),
            ("out", "passive", "text"),
        ]
        assert (await sim.get("/_sandbox/record")).json()["count"] == 0

    async def test_retries_a_failing_server_with_the_same_message(
        self, sim: httpx.AsyncClient, receiver: Receiver, receiver_url: str
    ) -> None:
        app_id, openid = await _setup(sim, receiver, receiver_url, "safe")
        receiver.fail_first = 2
        result = await act(sim, app_id, openid, type="text", content="retry me")
        assert [a["status"] for a in result["attempts"]] == [500, 500, 200]
        assert len({hit["body"] for hit in receiver.hits}) == 1
        assert len(receiver.events) == 1

    async def test_retries_a_slow_server_with_the_same_message(
        self, sim: httpx.AsyncClient, receiver: Receiver, receiver_url: str
    ) -> None:
        app_id, openid = await _setup(sim, receiver, receiver_url, webhook_timeout_s=0.3)
        receiver.slow_first, receiver.slow_s = 1, 1.0
        result = await act(sim, app_id, openid, type="text", content="slow")
        assert result["attempts"][0]["error"].startswith("no answer within")
        assert result["attempts"][1]["status"] == 200
        msg_ids = {parse_body(hit["body"])["MsgId"] for hit in receiver.hits}
        created = {parse_body(hit["body"])["CreateTime"] for hit in receiver.hits}
        assert msg_ids == {result["msg_id"]}
        assert len(created) == 1

    async def test_three_attempts_then_the_user_sees_the_notice(
        self, sim: httpx.AsyncClient, receiver: Receiver, receiver_url: str
    ) -> None:
        app_id, openid = await _setup(sim, receiver, receiver_url)
        receiver.fail_first = 5
        result = await act(sim, app_id, openid, type="text", content="anyone?")
        assert len(result["attempts"]) == 3
        assert result["delivered"] is False
        conversation = (await sim.get(f"/_sandbox/accounts/{app_id}/users/{openid}/conversation")).json()
        assert conversation["entries"][-1]["content"]["text"] == "该公众号暂时无法提供服务，请稍后再试"

    async def test_wrong_token_is_refused_by_the_adapter(
        self, sim: httpx.AsyncClient, receiver: Receiver, receiver_url: str
    ) -> None:
        app_id, openid = await _setup(sim, receiver, receiver_url, "safe")
        await sim.post(
            "/_sandbox/accounts",
            json={
                "app_id": app_id,
                "app_secret": "x",
                "token": "someoneElse",
                "encoding_aes_key": "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR",
                "encryption_mode": "safe",
                "webhook_url": receiver_url,
            },
        )
        result = await act(sim, app_id, openid, type="text", content="forged")
        assert [a["status"] for a in result["attempts"]] == [403, 403, 403]
        assert receiver.events == {}

    async def test_url_verification(
        self, sim: httpx.AsyncClient, receiver: Receiver, receiver_url: str
    ) -> None:
        app_id, _openid = await _setup(sim, receiver, receiver_url, "safe")
        result = (await sim.post(f"/_sandbox/accounts/{app_id}/verify_url")).json()
        assert result["ok"] is True
        assert result["body"] == result["echostr"]


class TestUserActions:
    async def test_follow_by_qr_then_scan_then_unfollow(
        self, sim: httpx.AsyncClient, receiver: Receiver, receiver_url: str
    ) -> None:
        ctx = await register(sim, webhook_url=receiver_url)
        receiver.reset(adapter_for(ctx))
        user = await add_user(sim, ctx.external_id, subscribed=False)
        with_scene = await act(sim, ctx.external_id, user["openid"], type="scan", scene="spring")
        assert with_scene["fields"]["EventKey"] == "qrscene_spring"
        info = (await sim.get(f"/_sandbox/accounts/{ctx.external_id}/users/{user['openid']}")).json()
        assert (info["subscribed"], info["subscribe_scene"], info["qr_scene_str"]) == (
            True,
            "ADD_SCENE_QR_CODE",
            "spring",
        )
        await act(sim, ctx.external_id, user["openid"], type="scan", scene="42")
        await act(sim, ctx.external_id, user["openid"], type="unfollow")
        types = [(e.type, e.data.get("scene")) for e in receiver.events.values()]
        assert types == [("subscribe", "spring"), ("scan", "42"), ("unsubscribe", None)]
        refused = await sim.post(
            f"/_sandbox/accounts/{ctx.external_id}/users/{user['openid']}/actions",
            json={"type": "text", "content": "x"},
        )
        assert refused.status_code == 409

    @pytest.mark.parametrize(
        ("action", "expected"),
        [
            ({"type": "image"}, "image"),
            ({"type": "voice", "recognition": "你好"}, "voice"),
            ({"type": "video"}, "video"),
            ({"type": "shortvideo"}, "shortvideo"),
            ({"type": "location", "latitude": 31.23, "longitude": 121.47, "label": "上海"}, "location"),
            ({"type": "link", "url": "https://example.com", "title": "t"}, "link"),
            ({"type": "click", "key": "V1001"}, "menu_click"),
            ({"type": "view", "url": "https://example.com"}, "menu_view"),
            ({"type": "location_report"}, "location_report"),
            ({"type": "scancode_waitmsg", "key": "k", "scan_result": "r"}, "scancode"),
            ({"type": "pic_weixin", "key": "k", "count": 2}, "menu_pic"),
            ({"type": "location_select", "key": "k"}, "location_select"),
        ],
    )
    async def test_every_action_parses(
        self,
        sim: httpx.AsyncClient,
        receiver: Receiver,
        receiver_url: str,
        action: dict[str, object],
        expected: str,
    ) -> None:
        app_id, openid = await _setup(sim, receiver, receiver_url, "compatible")
        result = await act(sim, app_id, openid, **action)
        assert result["delivered"] is True, result
        assert [e.type for e in receiver.events.values()] == [expected]

    async def test_fire_and_forget(
        self, sim: httpx.AsyncClient, receiver: Receiver, receiver_url: str
    ) -> None:
        app_id, openid = await _setup(sim, receiver, receiver_url)
        result = await act(sim, app_id, openid, type="text", content="later", wait=False)
        assert result["queued"] is True
        for _ in range(200):
            if receiver.events:
                break
            await asyncio.sleep(0.01)
        assert [e.text for e in receiver.events.values()] == ["later"]

    async def test_template_result_is_pushed_back(
        self, sim: httpx.AsyncClient, receiver: Receiver, receiver_url: str
    ) -> None:
        app_id, openid = await _setup(sim, receiver, receiver_url, "safe", job_event_delay_s=0)
        await sim.patch(f"/_sandbox/accounts/{app_id}/users/{openid}", json={"blocked_templates": True})
        token = (
            await sim.post(
                "/cgi-bin/stable_token",
                json={
                    "grant_type": "client_credential",
                    "appid": app_id,
                    "secret": "0123456789abcdef0123456789abcdef",
                },
            )
        ).json()["access_token"]
        sent = (
            await sim.post(
                "/cgi-bin/message/template/send",
                params={"access_token": token},
                json={
                    "touser": openid,
                    "template_id": DEFAULT_TEMPLATES[0]["template_id"],
                    "data": {"thing1": {"value": "v"}},
                },
            )
        ).json()
        for _ in range(200):
            if receiver.events:
                break
            await asyncio.sleep(0.01)
        [event] = receiver.events.values()
        assert event.type == "template_send_finished"
        assert event.status is not None
        assert (event.status.message_id, event.status.status) == (str(sent["msgid"]), "failed")


class TestRecord:
    async def _token(self, sim: httpx.AsyncClient, app_id: str) -> str:
        response = await sim.get(
            "/cgi-bin/token",
            params={
                "grant_type": "client_credential",
                "appid": app_id,
                "secret": "0123456789abcdef0123456789abcdef",
            },
        )
        return str(response.json()["access_token"])

    async def test_duplicates_are_flagged_by_idempotency_key(self, sim: httpx.AsyncClient) -> None:
        ctx = await register(sim)
        app_id = ctx.external_id
        users = [(await add_user(sim, app_id))["openid"] for _ in range(2)]
        for openid in users:
            await act(sim, app_id, openid, type="text", content="hi")
        token = await self._token(sim, app_id)
        for openid, key in [(users[0], "a"), (users[0], "a"), (users[1], "b"), (users[1], None)]:
            headers = {"X-Parley-Idempotency-Key": key} if key else {}
            response = await sim.post(
                "/cgi-bin/message/custom/send",
                params={"access_token": token},
                headers=headers,
                json={"touser": openid, "msgtype": "text", "text": {"content": "yo"}},
            )
            assert response.json() == {"errcode": 0, "errmsg": "ok"}
        record = (await sim.get("/_sandbox/record")).json()
        assert [(e["idempotency_key"], e["duplicate"]) for e in record["entries"]] == [
            ("a", False),
            ("a", True),
            ("b", False),
            (None, False),
        ]
        assert record["duplicates"] == 1
        only = (await sim.get("/_sandbox/record", params={"openid": users[1], "app_id": app_id})).json()
        assert only["count"] == 2
        after = (await sim.get("/_sandbox/record", params={"after": record["entries"][1]["seq"]})).json()
        assert after["count"] == 2
        stats = (await sim.get("/_sandbox/stats")).json()
        assert (stats["deliveries"], stats["duplicates"]) == (4, 1)
        assert sum(stats["deliveries_per_second"].values()) == 4
        assert (await sim.delete("/_sandbox/record")).status_code == 204
        assert (await sim.get("/_sandbox/record")).json()["count"] == 0

    async def test_token_errors(self, sim: httpx.AsyncClient) -> None:
        ctx = await register(sim)
        missing = (await sim.get("/cgi-bin/menu/get")).json()
        invalid = (await sim.get("/cgi-bin/menu/get", params={"access_token": "nope"})).json()
        assert (missing["errcode"], invalid["errcode"]) == (41001, 40001)
        assert " rid: " in invalid["errmsg"]
        first = await self._token(sim, ctx.external_id)
        await self._token(sim, ctx.external_id)
        # A superseded /cgi-bin/token keeps working for 5 minutes.
        assert (await sim.get("/cgi-bin/menu/get", params={"access_token": first})).json()["errcode"] == 46003
        await sim.post("/_sandbox/clock", json={"advance_s": 301})
        try:
            assert (await sim.get("/cgi-bin/menu/get", params={"access_token": first})).json()[
                "errcode"
            ] == 40001
        finally:
            await sim.post("/_sandbox/clock", json={"reset": True})

    async def test_stable_token_is_stable(self, sim: httpx.AsyncClient) -> None:
        ctx = await register(sim)
        body = {
            "grant_type": "client_credential",
            "appid": ctx.external_id,
            "secret": "0123456789abcdef0123456789abcdef",
        }
        one = (await sim.post("/cgi-bin/stable_token", json=body)).json()
        two = (await sim.post("/cgi-bin/stable_token", json=body)).json()
        forced = (await sim.post("/cgi-bin/stable_token", json={**body, "force_refresh": True})).json()
        assert one["access_token"] == two["access_token"] != forced["access_token"]
        wrong = (await sim.post("/cgi-bin/stable_token", json={**body, "secret": "x"})).json()
        assert wrong["errcode"] == 40125


class TestControl:
    async def test_accounts_and_bulk_users(self, sim: httpx.AsyncClient) -> None:
        ctx = await register(sim, mode="safe")
        bulk = (await sim.post(f"/_sandbox/accounts/{ctx.external_id}/users", json={"count": 1000})).json()
        assert (bulk["created"], bulk["total"]) == (1000, 1000)
        listing = (await sim.get(f"/_sandbox/accounts/{ctx.external_id}/users", params={"limit": 10})).json()
        assert (listing["total"], len(listing["users"])) == (1000, 10)
        accounts = (await sim.get("/_sandbox/accounts")).json()
        assert [a["app_id"] for a in accounts] == [ctx.external_id]
        assert accounts[0]["followers"] == 1000

    async def test_validation(self, sim: httpx.AsyncClient) -> None:
        bad_mode = await sim.post(
            "/_sandbox/accounts",
            json={
                "app_id": "wx0000000000000001",
                "app_secret": "s",
                "token": "tok",
                "encryption_mode": "safe",
            },
        )
        assert bad_mode.status_code == 422
        assert (await sim.get("/_sandbox/accounts/wx0000000000000009")).status_code == 404
        ctx = await register(sim)
        openid = (await add_user(sim, ctx.external_id))["openid"]
        unknown = await sim.post(
            f"/_sandbox/accounts/{ctx.external_id}/users/{openid}/actions", json={"type": "dance"}
        )
        assert unknown.status_code == 400

    async def test_phone_page(self, sim: httpx.AsyncClient) -> None:
        page = await sim.get("/")
        assert page.status_code == 200
        assert "/_sandbox/static/phone.js" in page.text
        script = await sim.get("/_sandbox/static/phone.js")
        assert script.status_code == 200
        assert "textContent" in script.text
        assert (await sim.get("/_sandbox/static/phone.css")).status_code == 200

    async def test_in_process_with_asgi_transport(self) -> None:
        app = create_app()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim") as http:
            ctx = await register(http)
            assert (await http.get(f"/_sandbox/accounts/{ctx.external_id}/menu")).json() == {"menu": None}
