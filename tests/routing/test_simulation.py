"""Deterministic simulations of every strategy: arrivals and agent states in, assignments out."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from parley.models import Conversation, EntryStatus, QueueEntry, RoleCapacity, RoutingAgent, User
from parley.routing import admin
from parley.routing.engine import dispatch
from parley.routing.schemas import CapacityWrite, MemberWrite
from parley.routing.service import enqueue, on_agent_available, on_conversation_closed, tick
from tests.routing.support import T0, world


async def arrive(w, queue, names, *, start=T0, step=timedelta(seconds=10)):
    """Each customer enters the queue in turn; returns who got whom."""
    got = []
    for i, name in enumerate(names):
        conversation = w.customers.get(name) or await w.customer(name)
        await enqueue(
            w.session, None, conversation_id=conversation.id, queue_id=queue.id, now=start + i * step
        )
        await w.session.commit()
        got.append(await w.assignee(name))
    return got


async def test_round_robin_takes_turns(session):
    w = await world(session)
    for name in ("Ann", "Bob", "Cy"):
        await w.agent(name)
    queue = await w.queue("Support", {"Ann": 1, "Bob": 1, "Cy": 1}, strategy="round_robin")
    assert await arrive(w, queue, [f"c{i}" for i in range(7)]) == [
        "Ann",
        "Bob",
        "Cy",
        "Ann",
        "Bob",
        "Cy",
        "Ann",
    ]


async def test_least_busy_goes_to_the_agent_with_fewest_open_conversations(session):
    w = await world(session)
    for name in ("Ann", "Bob", "Cy"):
        await w.agent(name)
    queue = await w.queue("Support", {"Ann": 1, "Bob": 1, "Cy": 1}, strategy="least_busy")
    # Ann already has two conversations, Cy one, Bob none.
    for owner, name in (("Ann", "old1"), ("Ann", "old2"), ("Cy", "old3")):
        conversation = await w.customer(name)
        conversation.assignee_id = w.agents[owner].id
    await session.commit()
    assert await arrive(w, queue, ["n1", "n2", "n3", "n4"]) == ["Bob", "Cy", "Bob", "Ann"]


async def test_longest_waiting_agent_gets_the_next_conversation(session):
    w = await world(session)
    await w.agent("Ann")
    await w.agent("Bob")
    await w.agent("Cy", online_since=T0 - timedelta(minutes=5))
    w.agents["Ann"].presence_changed_at = T0 - timedelta(hours=2)
    w.agents["Bob"].presence_changed_at = T0 - timedelta(hours=2)
    (await session.get(RoutingAgent, w.agents["Ann"].id)).last_assigned_at = T0 - timedelta(minutes=10)
    (await session.get(RoutingAgent, w.agents["Bob"].id)).last_assigned_at = T0 - timedelta(minutes=30)
    await session.commit()
    queue = await w.queue("Support", {"Ann": 1, "Bob": 1, "Cy": 1}, strategy="longest_waiting")
    # Idle since: Bob -30 min, Ann -10 min, Cy -5 min (came online); then whoever was served longest ago.
    assert await arrive(w, queue, ["c1", "c2", "c3", "c4"]) == ["Bob", "Ann", "Cy", "Bob"]


async def test_proportional_follows_the_weights(session):
    w = await world(session)
    await w.agent("Ann", capacity=10)
    await w.agent("Bob", capacity=10)
    queue = await w.queue("Sales", strategy="proportional")
    await admin.set_member(session, None, queue.id, MemberWrite(user_id=w.agents["Ann"].id, weight=3))
    await admin.set_member(session, None, queue.id, MemberWrite(user_id=w.agents["Bob"].id, weight=1))
    await session.commit()
    got = await arrive(w, queue, [f"c{i}" for i in range(8)])
    assert got == ["Ann", "Ann", "Ann", "Bob", "Ann", "Ann", "Ann", "Bob"]


async def test_higher_skill_level_is_offered_work_first(session):
    w = await world(session)
    await w.agent("Junior", capacity=5)
    await w.agent("Senior", capacity=1)
    queue = await w.queue("Tech", {"Junior": 1, "Senior": 5}, strategy="round_robin")
    assert await arrive(w, queue, ["c1", "c2", "c3"]) == ["Senior", "Junior", "Junior"]


async def test_vip_goes_ahead_and_everyone_hears_their_position(session):
    w = await world(session)
    await w.agent("Ann", online=False, capacity=1)
    queue = await w.queue("Support", {"Ann": 1}, vip_rule={"tags": ["vip"]})
    await arrive(w, queue, ["n1", "n2", "n3"])
    vip = await w.customer("gold", attributes={"tags": ["vip"]})
    await enqueue(session, None, conversation_id=vip.id, queue_id=queue.id, now=T0 + timedelta(minutes=1))
    await session.commit()
    assert await w.waiting_in(queue) == ["gold", "n1", "n2", "n3"]
    assert "number 1 in the queue" in (await w.texts_to("n1"))[0]
    assert "number 3 in the queue" in (await w.texts_to("n3"))[0]
    assert "number 1 in the queue" in (await w.texts_to("gold"))[0]

    # Ann comes online: the VIP goes first, though three others waited longer.
    ann = w.agents["Ann"]
    ann.presence, ann.presence_changed_at = "online", T0 + timedelta(minutes=2)
    await session.commit()
    await on_agent_available(session, None, ann.id, now=T0 + timedelta(minutes=2))
    await session.commit()
    assert await w.assignee("gold") == "Ann"
    assert await w.assignee("n1") is None
    # She resolves it: the longest-waiting of the others is hers at once.
    vip.status = "resolved"
    await session.commit()
    await on_conversation_closed(session, None, vip, previous_assignee=ann.id, now=T0 + timedelta(minutes=9))
    await session.commit()
    assert await w.assignee("n1") == "Ann"
    assert await w.waiting_in(queue) == ["n2", "n3"]


async def _served_by(w, customer, agent, resolved_at):
    old = await w.customer(customer)
    old.assignee_id = w.agents[agent].id
    old.status = "resolved"
    old.resolved_at = resolved_at
    await w.session.commit()
    new = Conversation(contact_id=old.contact_id, account_id=old.account_id, status="open")
    w.session.add(new)
    await w.session.commit()
    w.customers[customer] = new
    return new


async def test_last_agent_first_inside_its_window(session):
    w = await world(session)
    for name in ("Ann", "Bob"):
        await w.agent(name)
    queue = await w.queue("Support", {"Ann": 1, "Bob": 1}, strategy="round_robin", last_agent_window_s=3600)
    await _served_by(w, "returning", "Bob", T0 - timedelta(minutes=50))
    # Round robin alone would give Ann the first one.
    assert await arrive(w, queue, ["returning", "fresh"]) == ["Bob", "Ann"]


async def test_last_agent_first_outside_its_window_falls_back_to_the_strategy(session):
    w = await world(session)
    for name in ("Ann", "Bob"):
        await w.agent(name)
    queue = await w.queue("Support", {"Ann": 1, "Bob": 1}, strategy="round_robin", last_agent_window_s=3600)
    await _served_by(w, "returning", "Bob", T0 - timedelta(minutes=61))
    assert await arrive(w, queue, ["returning", "fresh"]) == ["Ann", "Bob"]


async def test_last_agent_when_busy_or_offline_falls_back_to_the_strategy(session):
    w = await world(session)
    await w.agent("Ann")
    await w.agent("Bob", online=False)
    queue = await w.queue("Support", {"Ann": 1, "Bob": 1}, strategy="round_robin", last_agent_window_s=3600)
    await _served_by(w, "returning", "Bob", T0 - timedelta(minutes=5))
    assert await arrive(w, queue, ["returning"]) == ["Ann"]


async def test_capacity_per_agent_and_per_role_and_freeing_up(session):
    w = await world(session)
    ann = await w.agent("Ann", capacity=2)
    bob = await w.agent("Bob")  # no own capacity: his role's
    session.add(RoleCapacity(role_id=bob.role_id, capacity=1))
    await session.commit()
    queue = await w.queue("Support", {"Ann": 1, "Bob": 1}, strategy="round_robin")
    got = await arrive(w, queue, [f"c{i}" for i in range(5)])
    assert got == ["Ann", "Bob", "Ann", None, None]
    assert await w.waiting_in(queue) == ["c3", "c4"]

    # Ann resolves one: the longest-waiting customer is hers at once.
    done = w.customers["c0"]
    done.status = "resolved"
    await session.commit()
    await on_conversation_closed(session, None, done, previous_assignee=ann.id, now=T0 + timedelta(minutes=3))
    await session.commit()
    assert await w.assignee("c3") == "Ann"
    # Bob's capacity is raised: the last one goes to him.
    await admin.set_agent_capacity(session, None, bob.id, CapacityWrite(capacity=2))
    await session.commit()
    assert await w.assignee("c4") == "Bob"
    loads = dict(
        (
            await session.execute(
                select(Conversation.assignee_id, func.count())
                .where(Conversation.status == "open", Conversation.assignee_id.is_not(None))
                .group_by(Conversation.assignee_id)
            )
        ).all()
    )
    assert loads == {ann.id: 2, bob.id: 2}


async def test_offline_and_away_agents_get_no_new_work(session):
    w = await world(session)
    await w.agent("Ann", online=False)
    away = await w.agent("Bob")
    away.presence = "away"
    await session.commit()
    queue = await w.queue("Support", {"Ann": 1, "Bob": 1})
    assert await arrive(w, queue, ["c1"]) == [None]
    assert await dispatch(session, None, now=T0 + timedelta(minutes=1)) == []


async def test_overflow_after_the_wait_limit(session):
    w = await world(session)
    await w.agent("Ann", online=False)
    await w.agent("Olga")
    backup = await w.queue("Backup", {"Olga": 1})
    first = await w.queue("First line", {"Ann": 1}, overflow_after_s=300, overflow_queue_id=backup.id)
    await arrive(w, first, ["c1"])
    await w.customer("c2")
    await enqueue(
        session, None, conversation_id=w.customers["c2"].id, queue_id=first.id, now=T0 + timedelta(minutes=2)
    )
    await session.commit()

    await tick(session, None, now=T0 + timedelta(seconds=299))
    await session.commit()
    assert await w.waiting_in(first) == ["c1", "c2"]

    result = await tick(session, None, now=T0 + timedelta(seconds=300))
    await session.commit()
    assert result["overflowed"] == 1
    assert await w.assignee("c1") == "Olga"
    assert await w.waiting_in(first) == ["c2"]
    moved = (
        await session.scalars(
            select(QueueEntry)
            .where(QueueEntry.conversation_id == w.customers["c1"].id)
            .order_by(QueueEntry.entered_at)
        )
    ).all()
    assert [(e.queue_id, e.status) for e in moved] == [
        (first.id, EntryStatus.overflowed),
        (backup.id, EntryStatus.assigned),
    ]
    assert moved[1].waiting_since == T0  # the customer keeps their place in time

    await tick(session, None, now=T0 + timedelta(minutes=7))
    await session.commit()
    assert await w.assignee("c2") == "Olga"


HOURS = {
    "timezone": "Asia/Shanghai",
    "days": {d: [["09:00", "12:00"], ["13:00", "18:00"]] for d in ("mon", "tue", "wed", "thu", "fri")},
    "holidays": ["2026-11-03"],
}


async def test_off_hours_reply_outside_business_hours(session):
    w = await world(session)
    await w.agent("Ann", online=False)
    queue = await w.queue("Support", {"Ann": 1}, hours=HOURS, off_hours_reply="We are closed; back at 9:00.")
    # 10:00 Monday in Shanghai: open; 12:30: lunch break of the split shift; Tuesday: a holiday; Saturday.
    await arrive(w, queue, ["morning"], start=T0)
    await arrive(w, queue, ["lunch"], start=T0 + timedelta(hours=2, minutes=30))
    await arrive(w, queue, ["holiday"], start=T0 + timedelta(days=1))
    await arrive(w, queue, ["saturday"], start=T0 + timedelta(days=5))
    assert "number 1 in the queue" in (await w.texts_to("morning"))[0]
    for name in ("lunch", "holiday", "saturday"):
        assert await w.texts_to(name) == ["We are closed; back at 9:00."], name
    # They still wait, and are the first served when an agent is there.
    assert await w.waiting_in(queue) == ["morning", "lunch", "holiday", "saturday"]


async def test_position_is_repeated_at_the_set_interval(session):
    w = await world(session)
    await w.agent("Ann", capacity=1)
    queue = await w.queue("Support", {"Ann": 1}, notice_interval_s=120)
    assert await arrive(w, queue, ["c1", "c2", "c3"]) == ["Ann", None, None]
    assert len(await w.texts_to("c3")) == 1
    await tick(session, None, now=T0 + timedelta(seconds=100))
    await session.commit()
    assert len(await w.texts_to("c3")) == 1
    await tick(session, None, now=T0 + timedelta(seconds=150))
    await session.commit()
    texts = await w.texts_to("c3")
    assert len(texts) == 2
    # c1 was served within the hour, so now there is an expected wait.
    assert "number 2 in the queue" in texts[1]
    assert "Expected wait" in texts[1]


async def test_full_queue_turns_customers_away_with_a_reply(session):
    w = await world(session)
    await w.agent("Ann", online=False)
    queue = await w.queue("Support", {"Ann": 1}, max_length=2, full_reply="Sorry, we are full.")
    await arrive(w, queue, ["c1", "c2", "c3"])
    assert await w.waiting_in(queue) == ["c1", "c2"]
    assert await w.texts_to("c3") == ["Sorry, we are full."]


async def test_manual_accept_takes_the_conversation_out_of_the_queue(session):
    w = await world(session)
    await w.agent("Ann", online=False)
    queue = await w.queue("Support", {"Ann": 1})
    await arrive(w, queue, ["c1"])
    conversation = w.customers["c1"]
    conversation.assignee_id = w.agents["Ann"].id
    await session.commit()
    from parley.routing.service import on_conversation_taken

    await on_conversation_taken(session, None, conversation.id, w.agents["Ann"].id)
    await session.commit()
    assert await w.waiting_in(queue) == []
    user = await session.get(User, w.agents["Ann"].id)
    assert user is not None
