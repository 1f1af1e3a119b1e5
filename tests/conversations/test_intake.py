"""Group commit of webhooks: many answered after one commit, each failing or succeeding on its own."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import event, func, select

from parley.conversations.intake import Delivery, Intake, intake_of
from parley.models import ChannelAccount, InboundEvent, Message
from parley.realtime.service import bus_of
from tests.automation.support import _account, create_rule, read_reply, text_xml
from tests.channels.test_webhooks import _signed_safe


class Gate:
    """Wraps the intake's real work: holds one group open on purpose, and injects failures by message text."""

    def __init__(self, intake: Intake) -> None:
        self.intake = intake
        self.real = intake.work
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        # The sessions themselves, not their ids: a finished session's id can be reused by the next one.
        self.sessions: list[Any] = []
        self.fail: set[str] = set()
        self.fail_commit: set[str] = set()
        self.real_batch = intake.batch
        self.batches: list[int] = []
        intake.work = self.work
        intake.batch = self.batch

    async def work(self, session: Any, account: ChannelAccount, delivery: Delivery) -> Any:
        texts = {e.text for e in delivery.events}
        return await self._around(session, texts, self.real(session, account, delivery))

    async def batch(self, session: Any, payloads: Any) -> Any:
        """A whole batch: a failure injected for one of its webhooks sends all of them the per-event way."""
        assert self.real_batch is not None
        self.batches.append(len(payloads))
        texts = {e.text for p in payloads for e in p.events}
        return await self._around(session, texts, self.real_batch(session, payloads))

    async def _around(self, session: Any, texts: set[str | None], real: Any) -> Any:
        self.sessions.append(session)
        if "gate" in texts:
            self.entered.set()
            await self.release.wait()
        stored = await real
        if texts & self.fail:
            raise RuntimeError("injected failure after storing")
        if texts & self.fail_commit:

            def refuse(sync_session: Any) -> None:
                # The savepoint's release commits too; only the group's own commit is refused.
                if not sync_session.in_nested_transaction():
                    raise RuntimeError("injected commit failure")

            event.listen(session.sync_session, "before_commit", refuse)
        return stored


async def post(
    client: httpx.AsyncClient, account_id: str, text: str, msg_id: int, openid: str
) -> httpx.Response:
    query, body = _signed_safe(text_xml(text, msg_id, openid))
    return await client.post(f"/channels/wechat/{account_id}/webhook", params=query, content=body)


async def grouped(
    client: httpx.AsyncClient, gate: Gate, account_id: str, posts: list[tuple[str, int, str]]
) -> list[httpx.Response]:
    """Posts ``posts`` while a first webhook holds the intake busy, so they all wait for one next group."""
    first = asyncio.create_task(post(client, account_id, "gate", 1, "oGate"))
    await asyncio.wait_for(gate.entered.wait(), 10)
    tasks = [asyncio.create_task(post(client, account_id, *p)) for p in posts]
    for _ in range(1000):
        if gate.intake.waiting == len(posts):
            break
        await asyncio.sleep(0.005)
    assert gate.intake.waiting == len(posts)
    gate.release.set()
    assert (await first).status_code == 200
    return list(await asyncio.gather(*tasks))


def published(app: Any) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []

    async def keep(e: dict[str, Any]) -> None:
        events.append(e)

    bus_of(app.state.ctx).subscribe(keep)
    return events


def texts_of(events: list[dict[str, Any]]) -> set[str]:
    return {(e.get("message") or {}).get("text") for e in events if e.get("type") == "message.created"}


async def stored_texts(session: Any) -> list[str]:
    # A fresh snapshot: SQLite would otherwise keep showing the one this session's last read began.
    await session.rollback()
    rows = await session.scalars(select(Message.text).where(Message.direction == "in").order_by(Message.text))
    return list(rows.all())


async def inbound_count(session: Any) -> int:
    await session.rollback()
    return int(await session.scalar(select(func.count()).select_from(InboundEvent)))


async def test_webhooks_that_arrive_together_share_one_commit(app, client, session, admin_headers):
    account = await _account(client, admin_headers, "wechat")
    gate = Gate(intake_of(app.state.ctx))
    seen = published(app)
    posts = [(f"hello {n}", 100 + n, f"oUser{n}") for n in range(8)]
    responses = await grouped(client, gate, account, posts)
    assert [r.status_code for r in responses] == [200] * 8
    # The gate's group, then one group for all eight, stored and processed as one batch.
    assert len({id(s) for s in gate.sessions}) == 2
    assert gate.batches == [1, 8]
    assert await stored_texts(session) == sorted(["gate", *(p[0] for p in posts)])
    assert texts_of(seen) == {"gate", *(p[0] for p in posts)}


async def test_a_failing_webhook_is_refused_alone_and_stored_on_retry(app, client, session, admin_headers):
    account = await _account(client, admin_headers, "wechat")
    gate = Gate(intake_of(app.state.ctx))
    gate.fail = {"poison"}
    seen = published(app)
    posts = [("fine 1", 201, "oA"), ("poison", 202, "oB"), ("fine 2", 203, "oC")]
    responses = await grouped(client, gate, account, posts)
    # The platform is told to retry the failed one; its neighbours are stored and answered.
    assert [r.status_code for r in responses] == [200, 503, 200]
    assert responses[1].headers["retry-after"]
    assert await stored_texts(session) == ["fine 1", "fine 2", "gate"]
    # Nothing was announced for the message that was rolled back.
    assert texts_of(seen) == {"gate", "fine 1", "fine 2"}
    gate.fail = set()
    retried = await post(client, account, "poison", 202, "oB")
    assert retried.status_code == 200
    assert await stored_texts(session) == ["fine 1", "fine 2", "gate", "poison"]
    assert await inbound_count(session) == 4


async def test_a_failed_commit_fails_the_whole_group_and_stores_none_of_it(
    app, client, session, admin_headers
):
    account = await _account(client, admin_headers, "wechat")
    gate = Gate(intake_of(app.state.ctx))
    gate.fail_commit = {"second"}
    seen = published(app)
    posts = [("first", 301, "oA"), ("second", 302, "oB"), ("third", 303, "oC")]
    responses = await grouped(client, gate, account, posts)
    assert [r.status_code for r in responses] == [503, 503, 503]
    assert await stored_texts(session) == ["gate"]
    assert await inbound_count(session) == 1
    assert texts_of(seen) == {"gate"}
    # The platforms retry; each message is then stored exactly once.
    gate.fail_commit = set()
    for text, msg_id, openid in posts:
        assert (await post(client, account, text, msg_id, openid)).status_code == 200
        assert (await post(client, account, text, msg_id, openid)).status_code == 200
    assert await stored_texts(session) == ["first", "gate", "second", "third"]
    assert await inbound_count(session) == 4


async def test_retries_of_one_message_in_one_group_are_stored_once(app, client, session, admin_headers):
    account = await _account(client, admin_headers, "wechat")
    gate = Gate(intake_of(app.state.ctx))
    responses = await grouped(client, gate, account, [("again", 401, "oA")] * 3)
    assert [r.status_code for r in responses] == [200] * 3
    assert await stored_texts(session) == ["again", "gate"]
    assert await inbound_count(session) == 2


@pytest.mark.parametrize("crowd", [1, 4])
async def test_each_passive_reply_rides_in_its_own_webhooks_response(app, client, admin_headers, crowd):
    account = await _account(client, admin_headers, "wechat", mode="safe")
    for keyword, answer in [("退款", "退款一般3个工作日内到账。"), ("发票", "发票请在订单页申请。")]:
        await create_rule(
            client,
            admin_headers,
            account,
            name=keyword,
            keywords=[{"text": keyword, "match": "contains"}],
            replies=[{"type": "text", "text": answer}],
        )
    gate = Gate(intake_of(app.state.ctx))
    posts = []
    for n in range(crowd):
        posts += [
            ("我想退款", 500 + 3 * n, f"oRefund{n}"),
            ("随便聊聊", 501 + 3 * n, f"oChat{n}"),
            ("开发票", 502 + 3 * n, f"oInvoice{n}"),
        ]
    responses = await grouped(client, gate, account, posts)
    replies = [read_reply(r, mode="safe") for r in responses]
    for (_, _, openid), reply in zip(posts, replies, strict=True):
        if openid.startswith("oChat"):
            assert reply is None
            continue
        assert reply is not None
        expected = "退款一般3个工作日内到账。" if openid.startswith("oRefund") else "发票请在订单页申请。"
        assert (reply["ToUserName"], reply["Content"]) == (openid, expected)


async def test_a_deactivated_account_refuses_webhooks_even_when_cached(app, client, admin_headers):
    account = await _account(client, admin_headers, "wechat")
    assert (await post(client, account, "before", 601, "oA")).status_code == 200
    response = await client.patch(
        f"/api/v1/channel-accounts/{account}", json={"is_active": False}, headers=admin_headers
    )
    assert response.status_code == 200, response.text
    assert (await post(client, account, "after", 602, "oA")).status_code == 404


async def test_rotated_credentials_take_effect_at_once(app, client, admin_headers):
    import time

    from parley.channels.wechat.crypto import MessageCrypto, sha1_signature
    from tests.channels.test_webhooks import WX

    account = await _account(client, admin_headers, "wechat")
    assert (await post(client, account, "before", 701, "oA")).status_code == 200
    response = await client.patch(
        f"/api/v1/channel-accounts/{account}",
        json={"credentials": {**WX, "encryption_mode": "safe", "token": "rotatedtoken"}},
        headers=admin_headers,
    )
    assert response.status_code == 200, response.text

    def signed(token: str, text: str, msg_id: int) -> tuple[dict[str, str], bytes]:
        crypto = MessageCrypto(token, WX["encoding_aes_key"], WX["app_id"])
        timestamp, nonce = str(int(time.time())), "n0nce"
        encrypt = crypto.encrypt(text_xml(text, msg_id, "oA"))
        query = {
            "signature": sha1_signature(token, timestamp, nonce),
            "timestamp": timestamp,
            "nonce": nonce,
            "encrypt_type": "aes",
            "msg_signature": crypto.sign(timestamp, nonce, encrypt),
        }
        body = f"<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>".encode()
        return query, body

    url = f"/channels/wechat/{account}/webhook"
    query, body = signed("rotatedtoken", "new token", 702)
    assert (await client.post(url, params=query, content=body)).status_code == 200
    query, body = signed(WX["token"], "old token", 703)
    assert (await client.post(url, params=query, content=body)).status_code == 403
