"""Knowledge base: segmented Chinese search, suggestions for agents, and the bot answering only when sure."""

from __future__ import annotations

from sqlalchemy import select

from parley.models import Conversation, TimelineEvent, UnmatchedText
from tests.automation.support import _account, push, read_reply, text_xml

ARTICLES = [
    {
        "title": "如何预约保养",
        "body": "您可以在公众号菜单“车辆服务-预约保养”中选择门店和时间，也可以致电门店预约。",
        "language": "zh_CN",
        "answer": "预约保养：点击菜单“车辆服务-预约保养”，选择门店和时间即可。",
        "keywords": ["保养", "预约"],
    },
    {
        "title": "发票开具说明",
        "body": "购车发票在交车当天由门店开具，电子发票会发送到您预留的邮箱。",
        "language": "zh_CN",
    },
    {
        "title": "道路救援电话",
        "body": "车辆故障或事故请拨打24小时道路救援电话 400-800-1234。",
        "language": "zh_CN",
        "keywords": ["救援", "抛锚"],
    },
    {
        "title": "How to book a service",
        "body": "Book a maintenance service from the menu Vehicle > Book service, or call your dealer.",
        "language": "en",
    },
]


async def _seed(client, headers) -> dict[str, str]:
    category = (
        await client.post("/api/v1/automation/kb/categories", json={"name": "售后服务"}, headers=headers)
    ).json()
    ids = {}
    for article in ARTICLES:
        response = await client.post(
            "/api/v1/automation/kb/articles", json={**article, "category_id": category["id"]}, headers=headers
        )
        assert response.status_code == 201, response.text
        ids[article["title"]] = response.json()["id"]
    return ids


async def test_chinese_questions_find_the_right_article(client, admin_headers):
    ids = await _seed(client, admin_headers)

    async def top(q: str, **params) -> str:
        hits = (
            await client.get("/api/v1/automation/kb/search", params={"q": q, **params}, headers=admin_headers)
        ).json()
        return hits[0]["article_id"] if hits else ""

    assert await top("我想预约一下保养") == ids["如何预约保养"]
    assert await top("电子发票发到哪里") == ids["发票开具说明"]
    assert await top("车子抛锚了怎么办") == ids["道路救援电话"]
    assert await top("book a service", language="en") == ids["How to book a service"]
    assert await top("今天天气怎么样") == ""


async def test_agent_gets_suggestions_for_the_latest_customer_message(client, session, admin_headers):
    ids = await _seed(client, admin_headers)
    account = await _account(client, admin_headers, "wechat", mode="plain")
    await push(client, account, text_xml("请问怎么预约保养？", 1), mode="plain")
    conversation = await session.scalar(select(Conversation))
    hits = (
        await client.get(
            "/api/v1/automation/suggestions",
            params={"conversation_id": str(conversation.id)},
            headers=admin_headers,
        )
    ).json()
    assert hits[0]["article_id"] == ids["如何预约保养"]
    assert hits[0]["answer"].startswith("预约保养：")


async def test_bot_answers_only_when_confident_and_only_when_enabled(client, session, admin_headers):
    await _seed(client, admin_headers)
    account = await _account(client, admin_headers, "wechat", mode="safe")
    # Disabled by default: the question waits for an agent.
    assert (
        read_reply(await push(client, account, text_xml("怎么预约保养", 1), mode="safe"), mode="safe") is None
    )
    enabled = await client.put(
        "/api/v1/automation/kb/bot", json={"enabled": True, "min_confidence": 0.6}, headers=admin_headers
    )
    assert enabled.status_code == 200
    reply = read_reply(await push(client, account, text_xml("怎么预约保养", 2), mode="safe"), mode="safe")
    assert (
        reply is not None
        and reply["Content"] == "预约保养：点击菜单“车辆服务-预约保养”，选择门店和时间即可。"
    )
    answered = await session.scalar(select(TimelineEvent).where(TimelineEvent.type == "bot_answer"))
    assert answered is not None and answered.data["title"] == "如何预约保养"
    # Unrelated: no answer, and it is kept for the administrators.
    assert (
        read_reply(await push(client, account, text_xml("你们老板是谁", 3), mode="safe"), mode="safe") is None
    )
    await session.commit()
    kept = [u.text for u in (await session.scalars(select(UnmatchedText))).all()]
    assert "你们老板是谁" in kept


async def test_bad_article_is_refused(client, admin_headers):
    response = await client.post(
        "/api/v1/automation/kb/articles",
        json={"title": "", "body": "x", "language": "chinese"},
        headers=admin_headers,
    )
    assert response.status_code == 422
    assert (await client.get("/api/v1/automation/kb/articles", headers=admin_headers)).json() == []


async def test_a_single_article_knowledge_base_still_answers(client, admin_headers):
    # With one article every word is in "all" articles; an idf that goes negative would hide it.
    await client.post("/api/v1/automation/kb/articles", json=ARTICLES[0], headers=admin_headers)
    hits = (
        await client.get(
            "/api/v1/automation/kb/search", params={"q": "保养怎么预约？"}, headers=admin_headers
        )
    ).json()
    assert [h["title"] for h in hits] == ["如何预约保养"]
    assert hits[0]["confidence"] >= 0.6
