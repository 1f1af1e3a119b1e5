"""The platforms' webhooks at Parley's door: signatures, hostile bodies, retries stored once."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest
from sqlalchemy import func, select

from parley.channels.wechat.crypto import MessageCrypto, sha1_signature
from parley.models import Contact, InboundEvent, Message

WX = {
    "app_id": "wx1234567890abcdef",
    "app_secret": "app-secret-0123456789abcdef0123",
    "token": "hooktoken",
    "encoding_aes_key": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
    "original_id": "gh_0123456789ab",
}
WA = {
    "phone_number_id": "106540352242922",
    "business_account_id": "102290129340398",
    "access_token": "EAAG-test-token",
    "app_secret": "whatsapp-app-secret",
    "verify_token": "verify-me",
}


async def _account(client, headers, channel: str, mode: str = "safe") -> str:
    credentials = {**WX, "encryption_mode": mode} if channel == "wechat" else WA
    response = await client.post(
        "/api/v1/channel-accounts",
        json={
            "type": channel,
            "name": f"{channel} test",
            "api_base_url": "http://127.0.0.1:9",
            "credentials": credentials,
        },
        headers=headers,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _wechat_text(msg_id: int = 1234567890123456, text: str = "你好") -> bytes:
    return (
        f"<xml><ToUserName><![CDATA[{WX['original_id']}]]></ToUserName><FromUserName><![CDATA[oUser1]]></FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[{text}]]></Content><MsgId>{msg_id}</MsgId></xml>"
    ).encode()


def _signed_plain(body: bytes) -> tuple[dict[str, str], bytes]:
    timestamp, nonce = str(int(time.time())), "n0nce"
    return {
        "signature": sha1_signature(WX["token"], timestamp, nonce),
        "timestamp": timestamp,
        "nonce": nonce,
    }, body


def _signed_safe(plain: bytes) -> tuple[dict[str, str], bytes]:
    crypto = MessageCrypto(WX["token"], WX["encoding_aes_key"], WX["app_id"])
    timestamp, nonce = str(int(time.time())), "n0nce"
    encrypt = crypto.encrypt(plain)
    query = {
        "signature": sha1_signature(WX["token"], timestamp, nonce),
        "timestamp": timestamp,
        "nonce": nonce,
        "encrypt_type": "aes",
        "msg_signature": crypto.sign(timestamp, nonce, encrypt),
    }
    body = f"<xml><ToUserName><![CDATA[{WX['original_id']}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
    return query, body.encode()


def _whatsapp_body(
    message_id: str = "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUNDRTFBMUU5RkQ2MEQ2QTk0NgA=",
) -> bytes:
    return json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": WA["business_account_id"],
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": "15550000000",
                                    "phone_number_id": WA["phone_number_id"],
                                },
                                "contacts": [{"profile": {"name": "Maria"}, "wa_id": "5511987654321"}],
                                "messages": [
                                    {
                                        "from": "5511987654321",
                                        "id": message_id,
                                        "timestamp": str(int(time.time())),
                                        "type": "text",
                                        "text": {"body": "Olá"},
                                    }
                                ],
                            },
                        }
                    ],
                }
            ],
        }
    ).encode()


def _whatsapp_signature(body: bytes) -> str:
    return "sha256=" + hmac.new(WA["app_secret"].encode(), body, hashlib.sha256).hexdigest()


async def _stored(session) -> tuple[int, int]:
    events = int(await session.scalar(select(func.count()).select_from(InboundEvent)))
    messages = int(await session.scalar(select(func.count()).select_from(Message)))
    return events, messages


class TestWeChatWebhook:
    async def test_url_verification_echoes_only_when_signed(self, client, admin_headers):
        account = await _account(client, admin_headers, "wechat")
        query, _ = _signed_plain(b"")
        ok = await client.get(f"/channels/wechat/{account}/webhook", params={**query, "echostr": "hello123"})
        assert (ok.status_code, ok.text) == (200, "hello123")
        bad = await client.get(
            f"/channels/wechat/{account}/webhook",
            params={**query, "signature": "0" * 40, "echostr": "hello123"},
        )
        assert bad.status_code == 403

    async def test_safe_mode_message_is_stored_as_a_conversation_message(
        self, client, session, admin_headers
    ):
        account = await _account(client, admin_headers, "wechat")
        query, body = _signed_safe(_wechat_text())
        response = await client.post(f"/channels/wechat/{account}/webhook", params=query, content=body)
        assert (response.status_code, response.text) == (200, "success")
        message = await session.scalar(select(Message))
        assert (message.text, message.direction, message.peer_id) == ("你好", "in", "oUser1")

    async def test_three_deliveries_of_one_message_are_stored_once(self, client, session, admin_headers):
        account = await _account(client, admin_headers, "wechat")
        for _ in range(3):
            query, body = _signed_safe(_wechat_text(msg_id=42))  # the platform retries with the same MsgId
            assert (
                await client.post(f"/channels/wechat/{account}/webhook", params=query, content=body)
            ).status_code == 200
        assert await _stored(session) == (1, 1)

    async def test_wrong_signature_is_403_and_stores_nothing(self, client, session, admin_headers):
        account = await _account(client, admin_headers, "wechat")
        query, body = _signed_safe(_wechat_text())
        query["msg_signature"] = "f" * 40
        response = await client.post(f"/channels/wechat/{account}/webhook", params=query, content=body)
        assert response.status_code == 403
        assert response.json()["error"] == "SignatureError"
        assert await _stored(session) == (0, 0)

    @pytest.mark.parametrize(
        "body",
        [
            pytest.param(b"<xml><ToUserName>broken", id="malformed"),
            pytest.param(
                b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;">]>'
                b"<xml><Content>&lol2;</Content></xml>",
                id="entity-expansion",
            ),
            pytest.param(
                b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><xml><Content>&xxe;</Content></xml>',
                id="external-entity",
            ),
            pytest.param(
                b"<xml><MsgType>text</MsgType><CreateTime>yesterday</CreateTime></xml>", id="wrong-types"
            ),
        ],
    )
    async def test_hostile_xml_is_4xx_and_stores_nothing(self, client, session, admin_headers, body):
        account = await _account(client, admin_headers, "wechat", mode="plain")
        query, _ = _signed_plain(body)
        response = await client.post(f"/channels/wechat/{account}/webhook", params=query, content=body)
        assert 400 <= response.status_code < 500
        assert await _stored(session) == (0, 0)
        # The server is still up and serving.
        assert (await client.get("/healthz")).status_code == 200

    async def test_oversized_body_is_413_and_stores_nothing(self, client, session, admin_headers):
        account = await _account(client, admin_headers, "wechat", mode="plain")
        body = _wechat_text(text="x" * (1024 * 1024 + 1))
        query, _ = _signed_plain(body)
        response = await client.post(f"/channels/wechat/{account}/webhook", params=query, content=body)
        assert response.status_code == 413
        assert await _stored(session) == (0, 0)


class TestWhatsAppWebhook:
    async def test_verification_handshake(self, client, admin_headers):
        account = await _account(client, admin_headers, "whatsapp")
        params = {
            "hub.mode": "subscribe",
            "hub.verify_token": WA["verify_token"],
            "hub.challenge": "1158201444",
        }
        ok = await client.get(f"/channels/whatsapp/{account}/webhook", params=params)
        assert (ok.status_code, ok.text) == (200, "1158201444")
        bad = await client.get(
            f"/channels/whatsapp/{account}/webhook", params={**params, "hub.verify_token": "nope"}
        )
        assert bad.status_code == 403

    async def test_two_deliveries_are_stored_once_as_one_contact(self, client, session, admin_headers):
        account = await _account(client, admin_headers, "whatsapp")
        body = _whatsapp_body()
        for _ in range(2):
            response = await client.post(
                f"/channels/whatsapp/{account}/webhook",
                content=body,
                headers={
                    "X-Hub-Signature-256": _whatsapp_signature(body),
                    "Content-Type": "application/json",
                },
            )
            assert response.status_code == 200
        assert await _stored(session) == (1, 1)
        contact = await session.scalar(select(Contact))
        assert (contact.display_name, contact.phone) == ("Maria", "+5511987654321")

    @pytest.mark.parametrize(
        ("body", "expected"),
        [
            pytest.param(b"{not json", 400, id="invalid-json"),
            pytest.param(b'{"object": "whatsapp_business_account", "entry": "x"}', 400, id="wrong-types"),
            pytest.param(b"[1, 2, 3]", 400, id="not-an-object"),
        ],
    )
    async def test_bad_json_is_refused_and_stores_nothing(
        self, client, session, admin_headers, body, expected
    ):
        account = await _account(client, admin_headers, "whatsapp")
        response = await client.post(
            f"/channels/whatsapp/{account}/webhook",
            content=body,
            headers={"X-Hub-Signature-256": _whatsapp_signature(body), "Content-Type": "application/json"},
        )
        assert response.status_code == expected
        assert await _stored(session) == (0, 0)

    async def test_wrong_signature_stores_nothing(self, client, session, admin_headers):
        account = await _account(client, admin_headers, "whatsapp")
        body = _whatsapp_body()
        response = await client.post(
            f"/channels/whatsapp/{account}/webhook",
            content=body,
            headers={"X-Hub-Signature-256": "sha256=" + "0" * 64, "Content-Type": "application/json"},
        )
        assert response.status_code == 403
        assert await _stored(session) == (0, 0)

    async def test_unknown_account_is_404(self, client):
        response = await client.post(
            "/channels/whatsapp/00000000-0000-0000-0000-000000000000/webhook", content=b"{}"
        )
        assert response.status_code == 404
