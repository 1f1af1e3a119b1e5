"""The intake's set-wise pipeline: what it takes on itself and what it leaves to the per-event path."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from parley.channels.base import Sender
from parley.conversations.batch import NotBatchable, Payload, batchable, process_batch
from parley.db import commit, savepoint
from parley.models import ChannelAccount, Contact, ContactIdentity, Conversation, Message
from tests.conversations.test_pipeline import Recorder, count, text
from tests.fixtures.factories import create_channel_account


async def run_batch(session, recorder: Recorder, payloads: list[Payload]) -> list:
    outcomes: list = []
    async with savepoint(session, keep=(ChannelAccount,)):
        await process_batch(session, recorder.ctx, payloads, outcomes)  # type: ignore[arg-type]
    await commit(session)
    return outcomes


def payload(account, *events) -> Payload:
    return Payload(account, list(events), "{}", None)


async def test_many_customers_in_one_batch_each_get_their_contact_conversation_and_message(session):
    recorder = Recorder()
    account = await create_channel_account(session, external_id="wx-1")
    first = [payload(account, text("wx-1", Sender(id=f"o{n}"), f"hello {n}", str(n))) for n in range(5)]
    outcomes = await run_batch(session, recorder, first)
    assert [o.message.text for o in outcomes] == [f"hello {n}" for n in range(5)]
    assert await count(session, Contact) == 5
    assert await count(session, Conversation) == 5
    # Known now: the next batch continues their conversations and counts.
    again = [payload(account, text("wx-1", Sender(id=f"o{n}"), f"again {n}", f"b{n}")) for n in range(5)]
    outcomes = await run_batch(session, recorder, again)
    assert not any(o.new_contact or o.new_conversation for o in outcomes)
    assert await count(session, Conversation) == 5
    conversations = (await session.scalars(select(Conversation))).all()
    assert {c.unread_count for c in conversations} == {2}
    assert {c.last_message_preview for c in conversations} == {f"again {n}" for n in range(5)}
    contacts = (await session.scalars(select(Contact))).all()
    assert {c.inbound_count for c in contacts} == {2}
    messages = (await session.scalars(select(Message).order_by(Message.id))).all()
    assert [m.text for m in messages][-5:] == [f"again {n}" for n in range(5)]
    created = [e for e in recorder.events if e["type"] == "message.created"]
    assert [e["message"]["id"] for e in created] == [m.id for m in messages]


async def test_a_new_openid_with_a_known_unionid_joins_that_contact(session):
    recorder = Recorder()
    chongqing = await create_channel_account(session, name="Chongqing", external_id="wx-cq")
    chengdu = await create_channel_account(session, name="Chengdu", external_id="wx-cd")
    await run_batch(
        session,
        recorder,
        [payload(chongqing, text("wx-cq", Sender(id="openid-A", unionid="u-1"), "你好", "1"))],
    )
    [outcome] = await run_batch(
        session,
        recorder,
        [payload(chengdu, text("wx-cd", Sender(id="openid-B", unionid="u-1"), "在吗", "2"))],
    )
    assert not outcome.new_contact and outcome.new_conversation
    assert await count(session, Contact) == 1
    assert await count(session, ContactIdentity) == 3


async def test_two_new_senders_sharing_a_unionid_are_left_to_the_per_event_path(session):
    recorder = Recorder()
    chongqing = await create_channel_account(session, name="Chongqing", external_id="wx-cq")
    chengdu = await create_channel_account(session, name="Chengdu", external_id="wx-cd")
    with pytest.raises(NotBatchable):
        await run_batch(
            session,
            recorder,
            [
                payload(chongqing, text("wx-cq", Sender(id="openid-A", unionid="u-1"), "你好", "1")),
                payload(chengdu, text("wx-cd", Sender(id="openid-B", unionid="u-1"), "在吗", "2")),
            ],
        )
    # Rolled back whole: nothing of it stored, nothing announced.
    assert await count(session, Contact) == 0
    assert await count(session, Message) == 0
    assert recorder.events == []


async def test_a_sender_whose_contact_was_merged_is_left_to_the_per_event_path(session):
    recorder = Recorder()
    account = await create_channel_account(session, external_id="wx-1")
    [a] = await run_batch(session, recorder, [payload(account, text("wx-1", Sender(id="oA"), "hi", "1"))])
    [b] = await run_batch(session, recorder, [payload(account, text("wx-1", Sender(id="oB"), "hi", "2"))])
    merged = await session.get(Contact, a.contact.id)
    merged.merged_into_id = b.contact.id
    await session.commit()
    with pytest.raises(NotBatchable):
        await run_batch(session, recorder, [payload(account, text("wx-1", Sender(id="oA"), "again", "3"))])


def test_only_customer_messages_one_per_sender_are_batched():
    one = text("wx-1", Sender(id="oA"), "hi", "1")
    other = text("wx-1", Sender(id="oB"), "hi", "2")
    same = text("wx-1", Sender(id="oA"), "again", "3")
    follow = one.model_copy(update={"kind": "event", "type": "subscribe"})
    assert batchable([one, other])
    assert not batchable([one, same])
    assert not batchable([one, follow])
    assert not batchable([])
