"""Keyword and event replies through the real webhook: passive on WeChat (plain and safe), outbox elsewhere."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from parley.models import Message, OutboxJob, Priority, UnmatchedText
from tests.automation.support import _account, create_rule, event_xml, push, read_reply, text_xml
from tests.channels.test_webhooks import _whatsapp_body, _whatsapp_signature


@pytest.mark.parametrize("mode", ["plain", "safe"])
async def test_matching_text_gets_its_reply_in_the_same_http_response(client, session, admin_headers, mode):
    account = await _account(client, admin_headers, "wechat", mode=mode)
    await create_rule(
        client,
        admin_headers,
        account,
        name="Refunds",
        keywords=[{"text": "退款", "match": "contains"}],
        replies=[{"type": "text", "text": "退款一般3个工作日内到账。"}],
    )
    response = await push(client, account, text_xml("我想退款", 1001), mode=mode)
    reply = read_reply(response, mode=mode)
    assert reply is not None
    assert (reply["MsgType"], reply["Content"], reply["ToUserName"]) == (
        "text",
        "退款一般3个工作日内到账。",
        "oUser1",
    )
    # The answer is in the conversation, sent, and nothing is left in the outbox to send it twice.
    out = (await session.scalars(select(Message).where(Message.direction == "out"))).all()
    assert [(m.text, m.status, m.priority) for m in out] == [
        ("退款一般3个工作日内到账。", "sent", Priority.automated)
    ]
    assert out[0].conversation_id is not None
    assert (await session.scalars(select(OutboxJob))).all() == []


@pytest.mark.parametrize("mode", ["plain", "safe"])
async def test_image_reply_goes_out_passively_too(client, admin_headers, mode):
    account = await _account(client, admin_headers, "wechat", mode=mode)
    await create_rule(
        client,
        admin_headers,
        account,
        name="Price list",
        keywords=[{"text": "价格表", "match": "exact"}],
        replies=[{"type": "image", "media_id": "MEDIA_price_list"}],
    )
    reply = read_reply(await push(client, account, text_xml("价格表", 1002), mode=mode), mode=mode)
    assert reply is not None
    assert reply["MsgType"] == "image"
    assert reply["Image"] == {"MediaId": "MEDIA_price_list"}


async def test_unmatched_text_gets_success_and_is_kept_for_review(client, session, admin_headers):
    account = await _account(client, admin_headers, "wechat", mode="plain")
    await create_rule(
        client,
        admin_headers,
        account,
        name="Hours",
        keywords=[{"text": "营业时间"}],
        replies=[{"text": "9:00-18:00"}],
    )
    response = await push(client, account, text_xml("有停车位吗", 1003), mode="plain")
    assert response.text == "success"
    texts = [t.text for t in (await session.scalars(select(UnmatchedText))).all()]
    assert texts == ["有停车位吗"]


async def test_replies_are_picked_at_random_among_alternatives(client, admin_headers):
    account = await _account(client, admin_headers, "wechat", mode="plain")
    options = ["您好！", "你好呀～", "Hi, 有什么可以帮您？"]
    await create_rule(
        client,
        admin_headers,
        account,
        name="Greeting",
        keywords=[{"text": "你好", "match": "exact"}],
        replies=[{"text": t} for t in options],
    )
    seen = set()
    for i in range(40):
        reply = read_reply(
            await push(client, account, text_xml("你好", 2000 + i), mode="plain"), mode="plain"
        )
        assert reply is not None
        seen.add(reply["Content"])
    assert seen == set(options)


async def test_rule_outside_its_time_window_does_not_answer(client, admin_headers):
    account = await _account(client, admin_headers, "wechat", mode="plain")
    # A window that is never now: one day of the week, one minute long, eight hours from now.
    from datetime import UTC, datetime, timedelta

    later = datetime.now(UTC) + timedelta(hours=8)
    await create_rule(
        client,
        admin_headers,
        account,
        name="Night shift",
        keywords=[{"text": "值班"}],
        replies=[{"text": "夜间值班电话 400-000-0000"}],
        schedule={
            "timezone": "UTC",
            "days": [later.weekday()],
            "start": later.strftime("%H:%M"),
            "end": (later + timedelta(minutes=1)).strftime("%H:%M"),
        },
    )
    await create_rule(
        client,
        admin_headers,
        account,
        name="Fallback",
        keywords=[{"text": "值"}],
        replies=[{"text": "daytime"}],
    )
    reply = read_reply(await push(client, account, text_xml("今天谁值班", 1004), mode="plain"), mode="plain")
    assert reply is not None and reply["Content"] == "daytime"


async def test_welcome_on_follow_and_a_reply_per_qr_scene(client, admin_headers):
    account = await _account(client, admin_headers, "wechat", mode="safe")
    await create_rule(
        client, admin_headers, account, name="Welcome", trigger="follow", replies=[{"text": "欢迎关注！"}]
    )
    await create_rule(
        client,
        admin_headers,
        account,
        name="Expo",
        trigger="scan",
        scene="expo2026",
        replies=[{"text": "欢迎来到车展展台"}],
    )
    plain_follow = read_reply(
        await push(client, account, event_xml("subscribe", "oA"), mode="safe"), mode="safe"
    )
    assert plain_follow is not None and plain_follow["Content"] == "欢迎关注！"
    # A follow through the expo QR code is answered as the expo scene; a follower scanning it too.
    via_qr = await push(
        client, account, event_xml("subscribe", "oB", EventKey="qrscene_expo2026", Ticket="T1"), mode="safe"
    )
    assert read_reply(via_qr, mode="safe")["Content"] == "欢迎来到车展展台"  # type: ignore[index]
    scan = await push(client, account, event_xml("SCAN", "oA", EventKey="expo2026", Ticket="T1"), mode="safe")
    assert read_reply(scan, mode="safe")["Content"] == "欢迎来到车展展台"  # type: ignore[index]
    other_scene = await push(
        client, account, event_xml("SCAN", "oA", EventKey="other", Ticket="T2"), mode="safe"
    )
    assert read_reply(other_scene, mode="safe") is None


async def test_whatsapp_reply_goes_through_the_outbox_with_automated_priority(client, session, admin_headers):
    account = await _account(client, admin_headers, "whatsapp")
    await create_rule(
        client,
        admin_headers,
        account,
        name="Olá",
        keywords=[{"text": "olá", "match": "exact"}],
        replies=[{"text": "Olá! Como posso ajudar?"}],
    )
    body = _whatsapp_body()
    response = await client.post(
        f"/channels/whatsapp/{account}/webhook",
        content=body,
        headers={"X-Hub-Signature-256": _whatsapp_signature(body), "Content-Type": "application/json"},
    )
    assert response.status_code == 200
    job = await session.scalar(select(OutboxJob))
    assert job is not None and job.priority == Priority.automated
    message = await session.get(Message, job.message_id)
    assert message is not None and message.text == "Olá! Como posso ajudar?" and message.status == "queued"


async def test_rule_validation_errors_are_400s_with_a_message(client, admin_headers):
    account = await _account(client, admin_headers, "wechat", mode="plain")
    bad = await client.post(
        "/api/v1/automation/rules",
        json={"account_id": account, "name": "x", "keywords": [], "replies": [{"text": "hi"}]},
        headers=admin_headers,
    )
    assert bad.status_code == 422
    assert "keyword" in json.dumps(bad.json())
    no_reply = await client.post(
        "/api/v1/automation/rules",
        json={"account_id": account, "name": "x", "keywords": [{"text": "a"}], "replies": []},
        headers=admin_headers,
    )
    assert no_reply.status_code == 422
    assert (await client.get("/api/v1/automation/rules", headers=admin_headers)).json() == []


async def test_unmatched_texts_are_grouped_by_similarity(client, admin_headers):
    account = await _account(client, admin_headers, "wechat", mode="plain")
    texts = [
        "有停车位吗",
        "有停车位吗？",
        "有没有停车位",
        "有停车为吗",
        "几点关门",
        "几点关门啊",
        "发票怎么开",
    ]
    for i, text in enumerate(texts):
        await push(client, account, text_xml(text, 3000 + i), mode="plain")
    groups = (
        await client.get(
            "/api/v1/automation/unmatched", params={"account_id": account}, headers=admin_headers
        )
    ).json()
    assert groups[0]["count"] >= 3 and "停车" in groups[0]["sample"]
    assert any(g["count"] == 2 and "关门" in g["sample"] for g in groups)
    assert sum(g["count"] for g in groups) == len(texts)
