"""Helpers for automation tests: WeChat pushes signed as the platform signs them, replies read back."""

from __future__ import annotations

import time
from typing import Any

from parley.channels.wechat.crypto import MessageCrypto
from parley.channels.wechat.xml import parse_body
from tests.channels.test_webhooks import WX, _account, _signed_plain, _signed_safe

__all__ = ["WX", "_account"]


def wechat_xml(openid: str = "oUser1", *, msg_id: int | None = None, **fields: Any) -> bytes:
    parts = [
        f"<ToUserName><![CDATA[{WX['original_id']}]]></ToUserName>",
        f"<FromUserName><![CDATA[{openid}]]></FromUserName>",
        f"<CreateTime>{int(time.time())}</CreateTime>",
    ]
    for key, value in fields.items():
        parts.append(f"<{key}><![CDATA[{value}]]></{key}>")
    if msg_id is not None:
        parts.append(f"<MsgId>{msg_id}</MsgId>")
    return ("<xml>" + "".join(parts) + "</xml>").encode()


def text_xml(text: str, msg_id: int, openid: str = "oUser1") -> bytes:
    return wechat_xml(openid, msg_id=msg_id, MsgType="text", Content=text)


def event_xml(event: str, openid: str = "oUser1", **fields: Any) -> bytes:
    return wechat_xml(openid, MsgType="event", Event=event, **fields)


async def push(client, account_id: str, plain: bytes, *, mode: str) -> Any:
    query, body = _signed_safe(plain) if mode == "safe" else _signed_plain(plain)
    response = await client.post(f"/channels/wechat/{account_id}/webhook", params=query, content=body)
    assert response.status_code == 200, response.text
    return response


def read_reply(response: Any, *, mode: str) -> dict[str, Any] | None:
    """The passive reply in a webhook answer (decrypted and signature-checked in safe mode), or None."""
    if response.content in (b"success", b""):
        return None
    tree = parse_body(response.content)
    if mode == "safe":
        crypto = MessageCrypto(WX["token"], WX["encoding_aes_key"], WX["app_id"])
        assert crypto.check(str(tree["TimeStamp"]), str(tree["Nonce"]), str(tree["Encrypt"]), str(tree["MsgSignature"]))
        tree = parse_body(crypto.decrypt(str(tree["Encrypt"])))
    return dict(tree)


async def create_rule(client, headers, account_id: str, **body: Any) -> dict[str, Any]:
    response = await client.post("/api/v1/automation/rules", json={"account_id": account_id, **body}, headers=headers)
    assert response.status_code == 201, response.text
    return dict(response.json())
