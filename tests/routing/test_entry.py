"""Entry rules on inbound events: keyword, menu click, QR scene, tags and attributes, account; in order."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from parley.channels.base import InboundEvent, InboundKind, Sender
from parley.contacts.tags import apply_tags
from parley.kit.types import utcnow
from parley.models import Contact, ContactIdentity, Conversation, Direction, EntryStatus, Message, QueueEntry
from parley.routing import admin
from parley.routing.rules import contact_tag_names
from parley.routing.schemas import MemberWrite, QueueWrite, RuleWrite
from tests.conversations.test_pipeline import Recorder, deliver
from tests.fixtures.factories import create_channel_account, create_user


def _at(n: int):
    # Recent, on the real clock: the reply window and WeChat's one-minute grace after a menu click use it.
    return utcnow() - timedelta(seconds=30) + timedelta(milliseconds=n)


def message(openid: str, body: str, n: int) -> InboundEvent:
    return InboundEvent(
        kind=InboundKind.message,
        type="text",
        dedupe_key=f"msg:{openid}:{n}",
        platform_message_id=f"{openid}-{n}",
        account_external_id="wx-1",
        sender=Sender(id=openid),
        occurred_at=_at(n),
        text=body,
    )


def event(openid: str, type_: str, data: dict, n: int) -> InboundEvent:
    return InboundEvent(
        kind=InboundKind.event,
        type=type_,
        dedupe_key=f"ev:{openid}:{n}",
        account_external_id="wx-1",
        sender=Sender(id=openid),
        occurred_at=_at(n),
        data=data,
    )


async def queue_of(session, openid: str) -> str | None:
    row = await session.scalar(
        select(QueueEntry)
        .join(ContactIdentity, ContactIdentity.contact_id == QueueEntry.contact_id)
        .where(ContactIdentity.value == openid)
        .order_by(QueueEntry.entered_at.desc())
        .limit(1)
    )
    return None if row is None else row.queue_id


async def setup(session):
    account = await create_channel_account(session, external_id="wx-1")
    queues = {}
    for name in ("Billing", "Support", "Store", "VIP", "General"):
        queues[name] = await admin.create_queue(session, QueueWrite(name=name))
    rules = [
        ("refund keyword", "Billing", {"event": "message", "keywords": ["refund", "退款"]}),
        ("menu: talk to us", "Support", {"event": "menu_click", "event_key": "AGENT"}),
        ("store QR", "Store", {"event": "qr_scene", "event_key": "store-12"}),
        ("VIP customers", "VIP", {"tags": ["vip"]}),
        ("gold tier", "VIP", {"attributes": {"tier": "gold"}}),
        ("everything else on this account", "General", {"account_id": str(account.id), "event": "message"}),
    ]
    ids = []
    for name, queue, conditions in rules:
        rule = await admin.create_rule(
            session, RuleWrite(name=name, queue_id=queues[queue].id, conditions=conditions)
        )
        ids.append(rule.id)
    await session.commit()
    return account, {k: v.id for k, v in queues.items()}, ids


async def known_contact(session, account, openid: str, attributes: dict) -> None:
    attributes = dict(attributes)
    tags = attributes.pop("tags", [])
    contact = Contact(id=uuid.uuid4(), display_name=openid, attributes=attributes)
    session.add(contact)
    await session.flush()
    await apply_tags(session, [contact.id], tags, "agent")
    session.add(
        ContactIdentity(
            contact_id=contact.id,
            account_id=account.id,
            kind="wechat_openid",
            scope=str(account.id),
            value=openid,
        )
    )
    await session.commit()


async def test_rules_send_each_customer_to_the_right_queue(session):
    recorder = Recorder()
    account, queues, _ids = await setup(session)
    await known_contact(session, account, "o-vip", {"tags": ["vip"]})
    await known_contact(session, account, "o-gold", {"tier": "Gold"})
    await deliver(
        session,
        recorder,
        account,
        [
            message("o-refund", "I would like a REFUND please", 1),
            message("o-cn", "我要退款", 2),
            event("o-menu", "menu_click", {"event_key": "AGENT"}, 3),
            event("o-scan", "scan", {"event_key": "store-12", "scene": "store-12"}, 4),
            message("o-vip", "hello", 5),
            message("o-gold", "hello", 6),
            message("o-other", "hello", 7),
            event("o-nothing", "menu_click", {"event_key": "PRICES"}, 8),
        ],
    )
    assert await queue_of(session, "o-refund") == queues["Billing"]
    assert await queue_of(session, "o-cn") == queues["Billing"]
    assert await queue_of(session, "o-menu") == queues["Support"]
    assert await queue_of(session, "o-scan") == queues["Store"]
    assert await queue_of(session, "o-vip") == queues["VIP"]
    assert await queue_of(session, "o-gold") == queues["VIP"]
    assert await queue_of(session, "o-other") == queues["General"]
    assert await queue_of(session, "o-nothing") is None
    # The menu click opened a conversation for the agent to answer in; the unmatched one did not.
    conversations = (await session.scalars(select(Conversation))).all()
    assert len(conversations) == 7
    # Every waiting customer was told where they stand, through the delivery engine.
    notices = (
        await session.scalars(
            select(Message).where(Message.kind == "message", Message.direction == Direction.outbound)
        )
    ).all()
    assert len(notices) == 7
    assert sorted(m.text for m in notices if m.text and "in the queue" in m.text)[-1].startswith(
        "You are number 2 in the queue"
    )
    assert all("in the queue" in (m.text or "") for m in notices)
    assert any(e["type"] == "routing.updated" for e in recorder.events)


async def test_rule_order_decides_and_a_second_message_does_not_requeue(session):
    recorder = Recorder()
    account, queues, ids = await setup(session)
    # The administrator moves the catch-all to the top.
    await admin.order_rules(session, [ids[-1], *ids[:-1]])
    await session.commit()
    await deliver(session, recorder, account, [message("o-1", "refund", 1)])
    assert await queue_of(session, "o-1") == queues["General"]
    await deliver(session, recorder, account, [message("o-1", "refund again", 2)])
    entries = (await session.scalars(select(QueueEntry))).all()
    assert [(e.queue_id, e.status) for e in entries] == [(queues["General"], EntryStatus.waiting)]


async def test_an_online_agent_gets_the_customer_at_once(session):
    recorder = Recorder()
    account, queues, _ids = await setup(session)
    agent = await create_user(session, email="ann@example.com", name="Ann")
    agent.presence = "online"
    await session.commit()
    await admin.set_member(session, None, queues["Billing"], MemberWrite(user_id=agent.id))
    await session.commit()
    await deliver(session, recorder, account, [message("o-1", "refund", 1)])
    conversation = await session.scalar(select(Conversation))
    assert conversation.assignee_id == agent.id
    # Nobody waits, so nobody is told a position.
    assert (await session.scalars(select(Message).where(Message.direction == Direction.outbound))).all() == []
    updated = [e for e in recorder.events if e["type"] == "conversation.updated"]
    assert updated and updated[-1]["conversation"]["assignee_id"] == str(agent.id)


async def test_rules_see_the_contacts_tags(session):
    contact = Contact(id=uuid.uuid4(), display_name="x", attributes={"tags": ["not-a-tag"]})
    session.add(contact)
    await session.flush()
    await apply_tags(session, [contact.id], ["vip", "wholesale"], "agent")
    await session.commit()
    assert await contact_tag_names(session, contact.id) == {"vip", "wholesale"}


async def test_bad_rules_are_refused(session):
    from parley.exceptions import UnprocessableEntity

    _account, _queues, ids = await setup(session)
    with pytest.raises(UnprocessableEntity, match="queue"):
        await admin.create_rule(session, RuleWrite(name="x", queue_id=uuid.uuid4()))
    with pytest.raises(UnprocessableEntity, match="every rule"):
        await admin.order_rules(session, ids[:2])


async def test_two_messages_in_one_webhook_route_the_customer_once(session):
    recorder = Recorder()
    account, queues, _ids = await setup(session)
    agent = await create_user(session, email="ann@example.com", name="Ann")
    agent.presence = "online"
    await session.commit()
    await admin.set_member(session, None, queues["Billing"], MemberWrite(user_id=agent.id))
    await session.commit()
    await deliver(session, recorder, account, [message("o-1", "refund", 1), message("o-1", "refund now", 2)])
    entries = (await session.scalars(select(QueueEntry))).all()
    assert [(e.status, e.assigned_to_id) for e in entries] == [(EntryStatus.assigned, agent.id)]
    assert (await session.scalar(select(Conversation))).assignee_id == agent.id
