"""The webhook edge answers the webhook POST exactly as FastAPI's route behind the middlewares did."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client import REGISTRY

from parley.channels.base import ChannelType, WebhookAck
from parley.channels.edge import WEBHOOK_ROUTE, webhook_target
from parley.conversations.intake import Intake
from tests.channels.test_webhooks import (
    _account,
    _signed_plain,
    _signed_safe,
    _stored,
    _wechat_text,
    _whatsapp_body,
    _whatsapp_signature,
)

HOSTILE = {
    "malformed": b"<xml><ToUserName>broken",
    "entity expansion": (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>'
        b"<xml><Content>&lol2;</Content></xml>"
    ),
    "external entity": (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><xml><Content>&xxe;</Content></xml>'
    ),
    "wrong types": b"<xml><MsgType>text</MsgType><CreateTime>yesterday</CreateTime></xml>",
    "empty": b"",
}


async def _both(app, client: httpx.AsyncClient, url: str, **kwargs) -> tuple[httpx.Response, httpx.Response]:
    """The same request answered by the edge, then by FastAPI's route with the middlewares."""
    edge = app.webhook_edge
    served = await client.post(url, **kwargs)
    app.webhook_edge = None
    try:
        behind = await client.post(url, **kwargs)
    finally:
        app.webhook_edge = edge
    return served, behind


def _same(served: httpx.Response, behind: httpx.Response) -> None:
    assert served.status_code == behind.status_code
    assert served.content == behind.content
    for header in ("content-type", "content-length", "retry-after", "www-authenticate"):
        assert served.headers.get(header) == behind.headers.get(header), header


def _count(status: str, route: str = WEBHOOK_ROUTE) -> float:
    labels = {"method": "POST", "route": route, "status": status}
    return REGISTRY.get_sample_value("parley_http_requests_total", labels) or 0.0


class TestSameAnswers:
    async def test_a_genuine_push_is_stored_once(self, app, client, session, admin_headers):
        account = await _account(client, admin_headers, "wechat")
        query, body = _signed_safe(_wechat_text(msg_id=7))
        served, behind = await _both(
            app, client, f"/channels/wechat/{account}/webhook", params=query, content=body
        )
        _same(served, behind)
        assert (served.status_code, served.text, served.headers["content-type"]) == (
            200,
            "success",
            "text/plain; charset=utf-8",
        )
        assert await _stored(session) == (1, 1)

    async def test_wrong_and_missing_signatures(self, app, client, session, admin_headers):
        account = await _account(client, admin_headers, "wechat")
        query, body = _signed_safe(_wechat_text())
        url = f"/channels/wechat/{account}/webhook"
        served, behind = await _both(
            app, client, url, params={**query, "msg_signature": "f" * 40}, content=body
        )
        _same(served, behind)
        assert served.status_code == 403 and served.json()["error"] == "SignatureError"
        served, behind = await _both(app, client, url, content=body)
        _same(served, behind)
        assert served.status_code in (401, 403)
        assert await _stored(session) == (0, 0)

    @pytest.mark.parametrize("body", HOSTILE.values(), ids=HOSTILE.keys())
    async def test_hostile_bodies(self, app, client, session, admin_headers, body):
        account = await _account(client, admin_headers, "wechat", mode="plain")
        query, _ = _signed_plain(body)
        served, behind = await _both(
            app, client, f"/channels/wechat/{account}/webhook", params=query, content=body
        )
        _same(served, behind)
        assert served.status_code == 400 and served.json()["error"] == "MalformedPayloadError"
        assert await _stored(session) == (0, 0)

    async def test_whatsapp(self, app, client, session, admin_headers):
        account = await _account(client, admin_headers, "whatsapp")
        body = _whatsapp_body()
        url = f"/channels/whatsapp/{account}/webhook"
        headers = {"X-Hub-Signature-256": _whatsapp_signature(body), "Content-Type": "application/json"}
        _same(*await _both(app, client, url, content=body, headers=headers))
        _same(*await _both(app, client, url, content=body, headers={**headers, "X-Hub-Signature-256": "x"}))
        assert await _stored(session) == (1, 1)

    async def test_unknown_and_mismatched_accounts_are_404(self, app, client, admin_headers):
        account = await _account(client, admin_headers, "wechat")
        for url in (f"/channels/wechat/{uuid.uuid4()}/webhook", f"/channels/whatsapp/{account}/webhook"):
            served, behind = await _both(app, client, url, content=b"<xml/>")
            _same(served, behind)
            assert served.json() == {
                "error": "NotFound",
                "detail": "No active channel account at this webhook address",
            }

    async def test_paths_the_edge_leaves_to_fastapi(self, app, client):
        for path in (
            "/channels/fax/{id}/webhook",
            "/channels/wechat/not-a-uuid/webhook",
            "/channels/wechat/{id}/webhook/",
        ):
            url = path.replace("{id}", str(uuid.uuid4()))
            served, behind = await _both(app, client, url, content=b"<xml/>")
            _same(served, behind)
            assert served.status_code != 200

    async def test_not_stored_is_503_with_retry_after(self, app, client, session, admin_headers, monkeypatch):
        account = await _account(client, admin_headers, "wechat")

        async def fail(*args, **kwargs):
            raise RuntimeError("disk full")

        monkeypatch.setattr(Intake, "submit", fail)
        query, body = _signed_safe(_wechat_text())
        served, behind = await _both(
            app, client, f"/channels/wechat/{account}/webhook", params=query, content=body
        )
        _same(served, behind)
        assert (served.status_code, served.headers["retry-after"]) == (503, "1")
        assert served.json()["error"] == "ServiceBusy"
        assert await _stored(session) == (0, 0)


class TestEdgeGuards:
    async def test_declared_and_streamed_bodies_over_the_limit_are_413(
        self, app, client, session, admin_headers
    ):
        account = await _account(client, admin_headers, "wechat", mode="plain")
        url = f"/channels/wechat/{account}/webhook"
        body = _wechat_text(text="x" * (1024 * 1024 + 1))
        query, _ = _signed_plain(body)
        _same(*await _both(app, client, url, params=query, content=body))

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(5):
                yield b"x" * (300 * 1024)

        served = await client.post(url, params=query, content=chunks())  # no Content-Length: chunked
        assert served.status_code == 413
        assert served.json()["error"] == "PayloadTooLarge"
        assert await _stored(session) == (0, 0)

    async def test_in_flight_cap_counts_and_sheds_webhooks(self, app, client, admin_headers, monkeypatch):
        account = await _account(client, admin_headers, "wechat")
        gate = app.webhook_edge.gate
        seen: list[int] = []

        async def process(*args, **kwargs):
            seen.append(gate.inflight)
            return WebhookAck(b"success")

        monkeypatch.setattr("parley.channels.edge.process_webhook", process)
        url = f"/channels/wechat/{account}/webhook"
        assert (await client.post(url, content=b"<xml/>")).status_code == 200
        assert seen == [1] and gate.inflight == 0  # counted while it ran, released after

        shed_before, unmatched_before = gate.shed, _count("503", "unmatched")
        gate.inflight = gate.max_inflight  # the API's and console's requests count against the same cap
        try:
            served, behind = await _both(app, client, url, content=b"<xml/>")
        finally:
            gate.inflight = 0
        _same(served, behind)
        assert (served.status_code, served.headers["retry-after"]) == (503, "1")
        assert served.json()["error"] == "Overloaded"
        assert gate.shed == shed_before + 2
        assert _count("503", "unmatched") == unmatched_before + 2  # as the metrics middleware counted it
        assert seen == [1]

    async def test_metrics_count_webhooks_by_route(self, app, client, admin_headers):
        account = await _account(client, admin_headers, "wechat")
        query, body = _signed_safe(_wechat_text(msg_id=9))
        ok, forbidden = _count("200"), _count("403")
        served, behind = await _both(
            app, client, f"/channels/wechat/{account}/webhook", params=query, content=body
        )
        assert (served.status_code, behind.status_code) == (200, 200)
        await client.post(
            f"/channels/wechat/{account}/webhook", params={**query, "msg_signature": "0"}, content=body
        )
        assert (_count("200"), _count("403")) == (ok + 2, forbidden + 1)


class TestTarget:
    @pytest.mark.parametrize(
        ("path", "expected"),
        [
            ("/channels/wechat/0b5e0a52-4f6e-4c53-9d5e-2f1f4b6f8e11/webhook", ChannelType.wechat),
            ("/channels/whatsapp/0b5e0a524f6e4c539d5e2f1f4b6f8e11/webhook", ChannelType.whatsapp),
            ("/channels/wechat/{0b5e0a52-4f6e-4c53-9d5e-2f1f4b6f8e11}/webhook", None),
            ("/channels/wechat/0b5e0a52-4f6e-4c53-9d5e-2f1f4b6f8e1/webhook", None),
            ("/channels/wechat/0b5e0a52-4f6e-4c53-9d5e-2f1f4b6f8e11/webhook/", None),
            ("/channels/WeChat/0b5e0a52-4f6e-4c53-9d5e-2f1f4b6f8e11/webhook", None),
            ("/api/v1/channels/wechat/0b5e0a52-4f6e-4c53-9d5e-2f1f4b6f8e11/webhook", None),
        ],
    )
    def test_only_the_webhook_path(self, path: str, expected: ChannelType | None) -> None:
        target = webhook_target({"path": path, "root_path": ""})
        assert (target[0] if target else None) == expected
