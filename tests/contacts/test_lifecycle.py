"""Lifecycle stages from the administrator's rules: on events (pipeline) and by the periodic job."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from parley.channels.base import InboundEvent, InboundKind, Sender
from parley.contacts import lifecycle
from parley.contacts.schemas import LifecycleRules
from parley.models import Contact
from tests.conversations.test_pipeline import Recorder, deliver
from tests.fixtures.factories import create_channel_account

NOW = datetime.now(UTC)


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


async def test_job_moves_contacts_by_the_rules_and_agrees_with_the_per_contact_rule(session):
    rows = {
        "never_wrote": Contact(display_name="a", created_at=ago(1)),
        "wrote_recently": Contact(display_name="b", last_inbound_at=ago(5)),
        "silent_long": Contact(display_name="c", last_inbound_at=ago(45)),
        "unfollowed": Contact(display_name="d", last_followed_at=ago(20), last_unfollowed_at=ago(3)),
        "refollowed": Contact(
            display_name="e", last_followed_at=ago(1), last_unfollowed_at=ago(3), last_inbound_at=ago(1)
        ),
    }
    for contact in rows.values():
        contact.id = uuid.uuid4()
        contact.attributes = {}
        session.add(contact)
    await session.commit()
    ids = {k: c.id for k, c in rows.items()}
    await lifecycle.set_rules(session, LifecycleRules(dormant_after_days=30, lost_on_unfollow=True))
    moved = await lifecycle.apply_rules(session, now=NOW)
    await session.commit()
    session.expire_all()
    stages = {
        k: await session.scalar(select(Contact.lifecycle_stage).where(Contact.id == ids[k])) for k in rows
    }
    assert stages == {
        "never_wrote": "new",
        "wrote_recently": "active",
        "silent_long": "dormant",
        "unfollowed": "lost",
        "refollowed": "active",
    }
    assert moved["dormant"] == 1 and moved["lost"] == 1
    rules = await lifecycle.get_rules(session)
    for key, contact in rows.items():
        await session.refresh(contact)
        assert lifecycle.compute_stage(contact, rules, NOW) == stages[key], key
    # Changing the rules moves people on the next run: 60 days makes the silent one active again.
    await lifecycle.set_rules(session, LifecycleRules(dormant_after_days=60, lost_on_unfollow=False))
    await lifecycle.apply_rules(session, now=NOW)
    await session.commit()
    await session.refresh(rows["silent_long"])
    await session.refresh(rows["unfollowed"])
    assert rows["silent_long"].lifecycle_stage == "active"
    assert rows["unfollowed"].lifecycle_stage == "new"


async def test_pipeline_sets_the_stage_on_message_and_unfollow(session):
    account = await create_channel_account(session, external_id="wx-life")
    recorder = Recorder()
    sender = Sender(id="openid-life")
    await deliver(
        session,
        recorder,
        account,
        [
            InboundEvent(
                kind=InboundKind.message,
                type="text",
                dedupe_key="m1",
                platform_message_id="m1",
                account_external_id="wx-life",
                sender=sender,
                occurred_at=ago(0.01),
                text="hi",
            )
        ],
    )
    contact = await session.scalar(select(Contact))
    assert contact is not None and contact.lifecycle_stage == "active"
    await deliver(
        session,
        recorder,
        account,
        [
            InboundEvent(
                kind=InboundKind.event,
                type="unsubscribe",
                dedupe_key="u1",
                account_external_id="wx-life",
                sender=sender,
                occurred_at=NOW,
            )
        ],
    )
    await session.refresh(contact)
    assert contact.lifecycle_stage == "lost"


async def test_rules_are_validated_through_the_api(client, admin_headers):
    bad = await client.put("/api/v1/contact-lifecycle", json={"dormant_after_days": 0}, headers=admin_headers)
    assert bad.status_code == 422
    good = await client.put(
        "/api/v1/contact-lifecycle",
        json={"dormant_after_days": 14, "lost_on_unfollow": False},
        headers=admin_headers,
    )
    assert good.status_code == 200
    assert (await client.get("/api/v1/contact-lifecycle", headers=admin_headers)).json()[
        "dormant_after_days"
    ] == 14
