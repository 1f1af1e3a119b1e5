"""Issue 3's end-to-end: simulated customers write on both platforms; Parley answers through both APIs."""

from __future__ import annotations

import json

from sqlalchemy import select

from parley.models import InboundEvent
from parley.sandbox import wiring
from tests.fixtures.browser import wait_until


async def _conversation_for(stack, account_id: str) -> dict:
    listed = (
        await stack.http.get(
            f"{stack.parley}/api/v1/conversations", params={"account_id": account_id}, headers=stack.admin
        )
    ).json()
    assert listed["total"] == 1
    return listed["items"][0]


async def test_wechat_follow_and_text_then_reply_reaches_the_simulator(stack, session):
    account, account_id = await stack.connect_wechat(mode="safe")
    await wiring.add_wechat_user(
        stack.http, stack.sims.wechat, account.app_id, nickname="王芳", openid="oE2eWang", subscribed=False
    )
    followed = await wiring.wechat_action(
        stack.http, stack.sims.wechat, account.app_id, "oE2eWang", type="follow", scene="campaign-7"
    )
    assert followed["delivered"]
    said = await wiring.wechat_action(
        stack.http, stack.sims.wechat, account.app_id, "oE2eWang", type="text", content="你好，在吗？"
    )
    assert said["delivered"]

    rows = (await session.scalars(select(InboundEvent).order_by(InboundEvent.id))).all()
    assert [(r.kind, r.type, r.sender_id) for r in rows] == [
        ("event", "subscribe", "oE2eWang"),
        ("message", "text", "oE2eWang"),
    ]
    assert rows[1].normalized["text"] == "你好，在吗？"
    assert (
        rows[0].normalized["data"].get("scene") in ("campaign-7", "qrscene_campaign-7")
        or rows[0].normalized["data"]
    )

    conversation = await _conversation_for(stack, account_id)
    sent = await stack.http.post(
        f"{stack.parley}/api/v1/conversations/{conversation['id']}/messages",
        json={"type": "text", "text": "您好，请问有什么可以帮您？"},
        headers=stack.admin,
    )
    assert sent.status_code == 201, sent.text

    async def arrived() -> bool:
        record = await wiring.record(stack.http, stack.sims.wechat, app_id=account.app_id, openid="oE2eWang")
        entries = record["entries"] if isinstance(record, dict) else record
        return any(
            "您好，请问有什么可以帮您？" in json.dumps(e["content"], ensure_ascii=False) for e in entries
        )

    await wait_until(arrived, timeout_s=15)


async def test_whatsapp_text_then_reply_reaches_the_simulator_and_ticks_advance(stack, session):
    account, account_id = await stack.connect_whatsapp()
    await wiring.add_whatsapp_user(
        stack.http, stack.sims.whatsapp, account.business_account_id, name="Maria", wa_id="5511912345678"
    )
    result = await wiring.whatsapp_action(
        stack.http,
        stack.sims.whatsapp,
        account.business_account_id,
        "5511912345678",
        type="text",
        text="Olá!",
    )
    assert result["delivery"]["delivered"]
    row = await session.scalar(select(InboundEvent))
    assert (row.kind, row.type, row.normalized["text"]) == ("message", "text", "Olá!")

    conversation = await _conversation_for(stack, account_id)
    sent = await stack.http.post(
        f"{stack.parley}/api/v1/conversations/{conversation['id']}/messages",
        json={"type": "text", "text": "Hi Maria, how can we help?"},
        headers=stack.admin,
    )
    assert sent.status_code == 201, sent.text
    message_id = sent.json()["id"]

    async def read() -> bool:
        detail = (
            await stack.http.get(
                f"{stack.parley}/api/v1/conversations/{conversation['id']}", headers=stack.admin
            )
        ).json()
        mine = [m for m in detail["messages"] if m["id"] == message_id]
        return bool(mine) and mine[0]["status"] == "read"

    await wait_until(read, timeout_s=20)
    record = await wiring.record(stack.http, stack.sims.whatsapp, to="5511912345678")
    entries = record["entries"] if isinstance(record, dict) else record
    assert [e["content"] for e in entries if e["type"] == "text"] and not any(e["duplicate"] for e in entries)


async def test_wechat_account_offers_its_templates_and_sends_one_outside_the_window(stack, session):
    account, account_id = await stack.connect_wechat(mode="safe")
    await wiring.add_wechat_user(
        stack.http, stack.sims.wechat, account.app_id, nickname="周强", openid="oTpl"
    )
    await wiring.wechat_action(
        stack.http, stack.sims.wechat, account.app_id, "oTpl", type="text", content="我的快递到哪了"
    )
    listed = await stack.http.get(
        f"{stack.parley}/api/v1/channel-accounts/{account_id}/templates", headers=stack.admin
    )
    assert listed.status_code == 200, listed.text
    shipped = next(t for t in listed.json() if t["category"] == "订单发货通知")
    assert shipped["parameters"] == ["thing1", "time2", "character_string3"]

    conversation = await _conversation_for(stack, account_id)
    sent = await stack.http.post(
        f"{stack.parley}/api/v1/conversations/{conversation['id']}/messages",
        json={
            "type": "template",
            "template": {
                "name": shipped["name"],
                "data": {"thing1": "智能手表", "time2": "2026-11-23 10:00", "character_string3": "SF123"},
            },
        },
        headers=stack.admin,
    )
    assert sent.status_code == 201, sent.text

    async def arrived() -> bool:
        record = await wiring.record(stack.http, stack.sims.wechat, app_id=account.app_id, openid="oTpl")
        entries = record["entries"] if isinstance(record, dict) else record
        return any(e["type"] == "template" and "SF123" in json.dumps(e["content"]) for e in entries)

    await wait_until(arrived, timeout_s=15)
