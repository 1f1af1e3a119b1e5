"""Helpers for automation tests: WeChat pushes signed as the platform signs them, replies read back."""

from __future__ import annotations

import time
from typing import Any, ClassVar

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
        assert crypto.check(
            str(tree["TimeStamp"]), str(tree["Nonce"]), str(tree["Encrypt"]), str(tree["MsgSignature"])
        )
        tree = parse_body(crypto.decrypt(str(tree["Encrypt"])))
    return dict(tree)


async def create_rule(client, headers, account_id: str, **body: Any) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/automation/rules", json={"account_id": account_id, **body}, headers=headers
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


class VinService:
    """The business's own system: a real HTTP server that looks VINs up (and can fail on purpose)."""

    KNOWN: ClassVar[dict[str, dict[str, str]]] = {
        "LSVAU2180N2183294": {"model": "Model Y", "dealer": "重庆两江店"}
    }

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.failures_left = 0
        self.url = ""

    def app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        async def lookup(request: Request) -> JSONResponse:
            body = await request.json()
            self.calls.append(body)
            if self.failures_left > 0:
                self.failures_left -= 1
                return JSONResponse({"error": "busy"}, status_code=503)
            found = self.KNOWN.get(str(body.get("vin", "")).upper())
            return JSONResponse({"found": found is not None, "vehicle": found or {}})

        return Starlette(routes=[Route("/vin", lookup, methods=["POST"])])


async def serve_vin_service() -> tuple[VinService, Any]:
    """Starts the service on a free port in this event loop; returns it and a stop coroutine function."""
    import asyncio

    import uvicorn

    from tests.fixtures.browser import free_port

    service = VinService()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(service.app(), host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    service.url = f"http://127.0.0.1:{port}/vin"

    async def stop() -> None:
        server.should_exit = True
        await task

    return service, stop


QUEUE_ID = "5b0f6f7e-8a44-4a53-9b0e-3f1d2c1a0b99"


async def create_queue(http: Any, headers: dict[str, str], *, base: str = "") -> str:
    """A routing queue for the flow to hand off to."""
    response = await http.post(
        f"{base}/api/v1/routing/queues", json={"name": "Vehicle support 车辆服务"}, headers=headers
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def vin_flow(
    url: str, *, question: str = "请发送您的17位车架号（VIN）", queue_id: str = QUEUE_ID
) -> dict[str, Any]:
    return {
        "start": "ask_vin",
        "nodes": [
            {
                "id": "ask_vin",
                "type": "ask",
                "reply": {"type": "text", "text": question},
                "save_as": "vin",
                "timeout_s": 600,
                "on_timeout": "bye",
                "next": "lookup",
            },
            {
                "id": "lookup",
                "type": "http",
                "url": url,
                "body": {"vin": "{{vin}}"},
                "timeout_s": 5,
                "retries": 2,
                "map": {"found": "found", "model": "vehicle.model", "dealer": "vehicle.dealer"},
                "next": "check",
                "on_error": "sorry",
                "sample_response": {"found": True, "vehicle": {"model": "Model Y", "dealer": "重庆两江店"}},
            },
            {
                "id": "check",
                "type": "branch",
                "branches": [{"when": [{"subject": "var.found", "op": "eq", "value": True}], "next": "tag"}],
                "default": "unknown",
            },
            {
                "id": "tag",
                "type": "set",
                "tags": ["车主"],
                "attributes": {"vin": "{{vin}}", "model": "{{model}}"},
                "next": "found",
            },
            {
                "id": "found",
                "type": "send",
                "reply": {"type": "text", "text": "您的{{model}}已找到，正在为您转接{{dealer}}顾问"},
                "next": "handoff",
            },
            {"id": "handoff", "type": "handoff", "queue_id": queue_id, "note": "VIN {{vin}} ({{model}})"},
            {
                "id": "unknown",
                "type": "send",
                "reply": {"type": "text", "text": "未找到该车架号，请核对后重试"},
                "next": "bye",
            },
            {
                "id": "sorry",
                "type": "send",
                "reply": {"type": "text", "text": "系统繁忙，请稍后再试"},
                "next": "bye",
            },
            {"id": "bye", "type": "end"},
        ],
    }
