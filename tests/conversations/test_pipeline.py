"""From stored platform events to contacts, conversations, messages and timeline."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select

from parley.channels.base import InboundEvent, InboundKind, Location, Sender, StatusUpdate
from parley.channels.ingest import store_events
from parley.conversations.batch import Payload, batchable, process_batch
from parley.conversations.inbound import process_new
from parley.conversations.pipeline import REOPEN_WINDOW
from parley.models import (
    ChannelAccount,
    Contact,
    ContactIdentity,
    Conversation,
    Message,
    TimelineEvent,
)
from parley.models import InboundEvent as InboundEventRow
from parley.realtime.bus import MemoryBus
from tests.fixtures.factories import create_channel_account

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


def text(account_ext: str, sender: Sender, body: str, msg_id: str, at: datetime = T0) -> InboundEvent:
    return InboundEvent(
        kind=InboundKind.message,
        type="text",
        dedupe_key=f"msg:{msg_id}",
        platform_message_id=msg_id,
        account_external_id=account_ext,
        sender=sender,
        occurred_at=at,
        text=body,
    )


class Recorder:
    def __init__(self) -> None:
        self.bus = MemoryBus()
        self.events: list[dict] = []

        async def keep(event: dict) -> None:
            self.events.append(event)

        self.bus.subscribe(keep)
        self.ctx = SimpleNamespace(extras={"realtime.bus": self.bus})


@pytest.fixture(autouse=True, params=["per_event", "batched"])
def path(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test here runs through the per-event pipeline and through the intake's batches."""
    global PATH
    PATH = request.param
    yield PATH
    PATH = "per_event"


PATH = "per_event"


async def deliver(session, recorder: Recorder, account, events: list[InboundEvent]):
    from parley.db import commit, savepoint

    if PATH == "batched" and batchable(events):
        # As the intake does: the batch in a savepoint, per event when it cannot be batched.
        outcomes: list = []
        try:
            async with savepoint(session, keep=(ChannelAccount,)):
                await process_batch(session, recorder.ctx, [Payload(account, events, "{}", None)], outcomes)  # type: ignore[arg-type]
        except Exception:  # noqa: S110  (NotBatchable or a failure: the per-event path isolates it)
            pass
        else:
            await commit(session)
            return outcomes
    stored = await store_events(session, account=account, events=events, raw="{}")
    outcomes = await process_new(session, recorder.ctx, account=account, ids=stored.new_ids)  # type: ignore[arg-type]
    await commit(session)
    return outcomes


async def count(session, model) -> int:
    return int(await session.scalar(select(func.count()).select_from(model)))


class TestContactResolution:
    async def test_same_unionid_on_two_wechat_accounts_is_one_contact(self, session):
        recorder = Recorder()
        chongqing = await create_channel_account(session, name="Chongqing", external_id="wx-cq")
        chengdu = await create_channel_account(session, name="Chengdu", external_id="wx-cd")
        await deliver(
            session,
            recorder,
            chongqing,
            [text("wx-cq", Sender(id="openid-A", unionid="union-1"), "你好", "1")],
        )
        await deliver(
            session, recorder, chengdu, [text("wx-cd", Sender(id="openid-B", unionid="union-1"), "在吗", "2")]
        )

        assert await count(session, Contact) == 1
        contact = await session.scalar(select(Contact))
        kinds = sorted(
            (i.kind, i.value)
            for i in (
                await session.scalars(select(ContactIdentity).where(ContactIdentity.contact_id == contact.id))
            ).all()
        )
        assert kinds == [
            ("wechat_openid", "openid-A"),
            ("wechat_openid", "openid-B"),
            ("wechat_unionid", "union-1"),
        ]
        # One conversation per account, both on the one contact.
        conversations = (await session.scalars(select(Conversation))).all()
        assert {c.contact_id for c in conversations} == {contact.id}
        assert len(conversations) == 2
        assert contact.inbound_count == 2

    async def test_whatsapp_number_links_to_contact_with_that_phone(self, session):
        recorder = Recorder()
        wechat = await create_channel_account(session, external_id="wx-1")
        whatsapp = await create_channel_account(session, type="whatsapp", external_id="pn-1")
        [first] = await deliver(
            session,
            recorder,
            wechat,
            [text("wx-1", Sender(id="openid-Z", phone="+86 138 0000 0000"), "hi", "w1")],
        )
        [second] = await deliver(
            session,
            recorder,
            whatsapp,
            [
                text(
                    "pn-1",
                    Sender(id="8613800000000", phone="8613800000000", display_name="Zhang"),
                    "hello",
                    "wamid.1",
                )
            ],
        )
        assert first.contact.id == second.contact.id
        assert await count(session, Contact) == 1

    async def test_different_people_stay_apart(self, session):
        recorder = Recorder()
        account = await create_channel_account(session, external_id="wx-1")
        await deliver(
            session,
            recorder,
            account,
            [text("wx-1", Sender(id="a"), "1", "1"), text("wx-1", Sender(id="b"), "2", "2")],
        )
        assert await count(session, Contact) == 2


class TestConversations:
    async def test_messages_continue_the_open_conversation(self, session):
        recorder = Recorder()
        account = await create_channel_account(session, external_id="wx-1")
        sender = Sender(id="openid-1")
        await deliver(session, recorder, account, [text("wx-1", sender, "one", "1")])
        await deliver(
            session, recorder, account, [text("wx-1", sender, "two", "2", T0 + timedelta(minutes=1))]
        )
        conversation = await session.scalar(select(Conversation))
        assert await count(session, Conversation) == 1
        assert conversation.unread_count == 2
        assert conversation.last_message_preview == "two"
        assert [m.text for m in (await session.scalars(select(Message).order_by(Message.id))).all()] == [
            "one",
            "two",
        ]

    async def test_recently_resolved_conversation_reopens(self, session):
        from parley.kit.types import utcnow

        recorder = Recorder()
        account = await create_channel_account(session, external_id="wx-1")
        sender = Sender(id="openid-1")
        [outcome] = await deliver(session, recorder, account, [text("wx-1", sender, "one", "1")])
        conversation = await session.get(Conversation, outcome.conversation.id)
        conversation.status, conversation.resolved_at = "resolved", utcnow() - timedelta(hours=1)
        await session.commit()
        [again] = await deliver(session, recorder, account, [text("wx-1", sender, "me again", "2")])
        assert again.conversation.id == conversation.id
        assert again.conversation.status == "open"

    async def test_long_resolved_conversation_starts_a_new_one(self, session):
        from parley.kit.types import utcnow

        recorder = Recorder()
        account = await create_channel_account(session, external_id="wx-1")
        sender = Sender(id="openid-1")
        [outcome] = await deliver(session, recorder, account, [text("wx-1", sender, "one", "1")])
        conversation = await session.get(Conversation, outcome.conversation.id)
        conversation.status, conversation.resolved_at = (
            "resolved",
            utcnow() - REOPEN_WINDOW - timedelta(hours=1),
        )
        await session.commit()
        [again] = await deliver(session, recorder, account, [text("wx-1", sender, "new question", "2")])
        assert again.conversation.id != conversation.id
        assert await count(session, Conversation) == 2

    async def test_realtime_events_go_out_after_commit(self, session):
        recorder = Recorder()
        account = await create_channel_account(session, external_id="wx-1")
        await deliver(
            session, recorder, account, [text("wx-1", Sender(id="o1", display_name="Wang"), "你好", "1")]
        )
        types = [e["type"] for e in recorder.events]
        assert types == ["conversation.opened", "message.created", "contact.created"]
        created = recorder.events[1]
        assert created["message"]["text"] == "你好"
        assert created["conversation"]["contact_name"] == "Wang"


class TestEventsOnTheTimeline:
    async def test_follow_scan_location_are_timeline_events_not_messages(self, session):
        recorder = Recorder()
        account = await create_channel_account(session, external_id="wx-1")
        sender = Sender(id="openid-1")
        common = {"account_external_id": "wx-1", "sender": sender, "kind": InboundKind.event}
        await deliver(
            session,
            recorder,
            account,
            [
                InboundEvent(
                    type="subscribe", dedupe_key="e1", occurred_at=T0, data={"scene": "campaign-42"}, **common
                ),
                InboundEvent(
                    type="location_report",
                    dedupe_key="e2",
                    occurred_at=T0 + timedelta(minutes=5),
                    location=Location(latitude=29.56, longitude=106.55),
                    **common,
                ),
                InboundEvent(
                    type="unsubscribe", dedupe_key="e3", occurred_at=T0 + timedelta(days=1), **common
                ),
            ],
        )
        assert await count(session, Message) == 0
        assert await count(session, Conversation) == 0
        timeline = (await session.scalars(select(TimelineEvent).order_by(TimelineEvent.occurred_at))).all()
        assert [e.type for e in timeline] == ["subscribe", "location_report", "unsubscribe"]
        assert timeline[0].data == {"scene": "campaign-42"}
        assert timeline[1].data["location"] == {"latitude": 29.56, "longitude": 106.55}
        contact = await session.scalar(select(Contact))
        assert contact.first_followed_at == T0
        assert contact.last_unfollowed_at == T0 + timedelta(days=1)


class TestStatuses:
    async def _outbound(self, session, account, platform_id: str) -> Message:
        message = Message(
            account_id=account.id,
            direction="out",
            type="text",
            peer_id="o1",
            text="reply",
            content={},
            status="sent",
            idempotency_key=f"k-{platform_id}",
            platform_message_id=platform_id,
        )
        session.add(message)
        await session.commit()
        return message

    def _status(self, status: str, n: int, **extra) -> InboundEvent:
        return InboundEvent(
            kind=InboundKind.status,
            type=status,
            dedupe_key=f"status:wamid.9:{status}",
            account_external_id="pn",
            sender=Sender(id="o1"),
            occurred_at=T0 + timedelta(seconds=n),
            status=StatusUpdate(message_id="wamid.9", status=status, **extra),
        )

    async def test_statuses_never_go_backwards(self, session):
        recorder = Recorder()
        account = await create_channel_account(session, type="whatsapp", external_id="pn")
        message = await self._outbound(session, account, "wamid.9")
        await deliver(session, recorder, account, [self._status("read", 2), self._status("delivered", 1)])
        await session.refresh(message)
        assert message.status == "read"
        assert message.read_at == T0 + timedelta(seconds=2)
        assert message.delivered_at is not None

    async def test_failure_carries_the_platform_reason(self, session):
        recorder = Recorder()
        account = await create_channel_account(session, type="whatsapp", external_id="pn")
        message = await self._outbound(session, account, "wamid.9")
        await deliver(
            session,
            recorder,
            account,
            [self._status("failed", 1, error_code=131047, error_title="Re-engagement message")],
        )
        await session.refresh(message)
        assert (message.status, message.error_code, message.error_reason) == (
            "failed",
            "131047",
            "Re-engagement message",
        )


class TestFailures:
    async def test_a_failing_event_stays_pending_and_others_go_through(self, session, monkeypatch):
        from parley.conversations import batch, pipeline

        recorder = Recorder()
        account = await create_channel_account(session, external_id="wx-1")
        # Messages resolve their contact with resolve_contact_row (contact and conversation in one read).
        original = pipeline.resolve_contact_row

        async def flaky(session, *, account, sender, **options):
            if sender.id == "bad":
                raise RuntimeError("directory unavailable")
            return await original(session, account=account, sender=sender, **options)

        monkeypatch.setattr(pipeline, "resolve_contact_row", flaky)
        # A batch holding the bad event fails as a whole, and its events go the per-event way.
        original_keys = batch.identity_keys

        def flaky_keys(account, sender):
            if sender.id == "bad":
                raise RuntimeError("directory unavailable")
            return original_keys(account, sender)

        monkeypatch.setattr(batch, "identity_keys", flaky_keys)
        await deliver(
            session,
            recorder,
            account,
            [text("wx-1", Sender(id="bad"), "x", "1"), text("wx-1", Sender(id="good"), "y", "2")],
        )
        rows = {r.sender_id: r for r in (await session.scalars(select(InboundEventRow))).all()}
        assert rows["bad"].status == "pending" and "directory unavailable" in rows["bad"].error
        assert rows["good"].status == "processed"
        assert await count(session, Message) == 1

    async def test_a_failing_automation_leaves_no_trace_and_the_next_message_goes_through(
        self, session, monkeypatch
    ):
        from parley.conversations import batch, inbound
        from parley.db import on_commit
        from parley.kit.rows import insert_row

        recorder = Recorder()
        account = await create_channel_account(session, external_id="wx-1")
        announced: list[str] = []
        original = inbound.automation_react

        async def half_done_reply(session, ctx, *, account, row, outcome, responder):
            if outcome.message.text != "boom":
                return await original(
                    session, ctx, account=account, row=row, outcome=outcome, responder=responder
                )
            # A reply written and announced, then the rule fails before it finishes.
            await insert_row(
                session,
                Message,
                {
                    "account_id": account.id,
                    "conversation_id": outcome.conversation.id,
                    "contact_id": outcome.contact.id,
                    "direction": "out",
                    "type": "text",
                    "peer_id": "a",
                    "text": "half a reply",
                    "content": {"text": "half a reply"},
                    "status": "queued",
                    "idempotency_key": "half-a-reply",
                },
            )

            async def announce() -> None:
                announced.append("half a reply")

            on_commit(session, announce)
            raise RuntimeError("rule failed half way")

        monkeypatch.setattr(inbound, "automation_react", half_done_reply)
        monkeypatch.setattr(batch, "automation_react", half_done_reply)
        await deliver(
            session,
            recorder,
            account,
            [text("wx-1", Sender(id="a"), "boom", "1"), text("wx-1", Sender(id="a"), "still there?", "2")],
        )
        # Two senders: a batch when batched, rolled back whole and redone per event.
        await deliver(
            session,
            recorder,
            account,
            [text("wx-1", Sender(id="b"), "boom", "3"), text("wx-1", Sender(id="c"), "hello", "4")],
        )
        texts = sorted((await session.scalars(select(Message.text))).all())
        assert texts == ["boom", "boom", "hello", "still there?"]
        assert announced == []
        statuses = (await session.scalars(select(InboundEventRow.status))).all()
        assert list(statuses) == ["processed"] * 4
        assert await count(session, Contact) == 3
        assert {e["message"]["text"] for e in recorder.events if e["type"] == "message.created"} == {
            "boom",
            "still there?",
            "hello",
        }


class TestNames:
    async def test_nameless_customers_get_a_name_agents_can_tell_apart(self, session):
        recorder = Recorder()
        account = await create_channel_account(session, external_id="wx-1")
        [first] = await deliver(
            session, recorder, account, [text("wx-1", Sender(id="oAbcdefgh12345678"), "hi", "1")]
        )
        [second] = await deliver(
            session, recorder, account, [text("wx-1", Sender(id="oZyxwvut87654321"), "hi", "2")]
        )
        assert first.contact.display_name == "WeChat ·12345678"
        assert second.contact.display_name == "WeChat ·87654321"
