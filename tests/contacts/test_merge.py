"""Merging contacts from the console, undoing the merge, and splitting an identity off."""

from __future__ import annotations

from sqlalchemy import func, select

from parley.channels.base import Sender
from parley.models import Contact, ContactIdentity, ContactTag, Conversation, Message
from tests.conversations.test_pipeline import Recorder, deliver, text
from tests.fixtures.factories import create_channel_account


async def two_customers(session):
    """The same person wrote on a WeChat account and on WhatsApp: two contacts so far."""
    wechat = await create_channel_account(session, external_id="wx-m")
    whatsapp = await create_channel_account(session, type="whatsapp", external_id="wa-m")
    recorder = Recorder()
    await deliver(session, recorder, wechat, [text("wx-m", Sender(id="oMerge"), "微信你好", "w1")])
    await deliver(
        session, recorder, whatsapp, [text("wa-m", Sender(id="8613700000000"), "hi on whatsapp", "a1")]
    )
    on_wechat = await session.scalar(
        select(Contact).join(ContactIdentity).where(ContactIdentity.value == "oMerge")
    )
    on_whatsapp = await session.scalar(
        select(Contact).join(ContactIdentity).where(ContactIdentity.value == "8613700000000")
    )
    assert on_wechat is not None and on_whatsapp is not None and on_wechat.id != on_whatsapp.id
    return on_wechat, on_whatsapp


async def test_merge_moves_everything_and_undo_puts_it_back(client, session, admin_headers):
    keep, gone = await two_customers(session)
    keep_id, gone_id = keep.id, gone.id
    vip = (await client.post("/api/v1/tags", json={"name": "VIP"}, headers=admin_headers)).json()
    await client.post(
        f"/api/v1/contacts/{gone_id}/tags", json={"tag_ids": [vip["id"]]}, headers=admin_headers
    )
    await client.patch(
        f"/api/v1/contacts/{gone_id}", json={"profile": {"city": "重庆"}}, headers=admin_headers
    )

    merged = await client.post(
        f"/api/v1/contacts/{gone_id}/merge", json={"into_id": str(keep_id)}, headers=admin_headers
    )
    assert merged.status_code == 201, merged.text
    detail = (await client.get(f"/api/v1/contacts/{keep_id}", headers=admin_headers)).json()
    assert {i["value"] for i in detail["identities"]} >= {"oMerge", "8613700000000"}
    assert [t["name"] for t in detail["tags"]] == ["VIP"] and detail["city"] == "重庆"
    assert detail["inbound_count"] == 2
    timeline = (await client.get(f"/api/v1/contacts/{keep_id}/timeline", headers=admin_headers)).json()
    assert {t["text"] for t in timeline} == {"微信你好", "hi on whatsapp"}
    listed = (await client.get("/api/v1/contacts", headers=admin_headers)).json()
    assert listed["total"] == 1

    undone = await client.post(f"/api/v1/contact-merges/{merged.json()['id']}/undo", headers=admin_headers)
    assert undone.status_code == 200 and undone.json()["undone_at"]
    after = (await client.get(f"/api/v1/contacts/{keep_id}", headers=admin_headers)).json()
    assert {i["value"] for i in after["identities"]} == {"oMerge"}
    assert after["tags"] == [] and after["city"] == "" and after["inbound_count"] == 1
    back = (await client.get(f"/api/v1/contacts/{gone_id}", headers=admin_headers)).json()
    assert [t["name"] for t in back["tags"]] == ["VIP"] and back["city"] == "重庆"
    session.expire_all()
    assert (
        await session.scalar(select(func.count()).select_from(Message).where(Message.contact_id == gone_id))
        == 1
    )
    conversation = await session.scalar(select(Conversation).where(Conversation.contact_id == gone_id))
    assert conversation is not None
    assert (await client.get("/api/v1/contacts", headers=admin_headers)).json()["total"] == 2
    again = await client.post(f"/api/v1/contact-merges/{merged.json()['id']}/undo", headers=admin_headers)
    assert again.status_code == 409


async def test_split_identity_takes_its_conversations_and_messages(client, session, admin_headers):
    keep, gone = await two_customers(session)
    await client.post(
        f"/api/v1/contacts/{gone.id}/merge", json={"into_id": str(keep.id)}, headers=admin_headers
    )
    identity = await session.scalar(select(ContactIdentity).where(ContactIdentity.value == "8613700000000"))
    assert identity is not None
    split = await client.post(
        f"/api/v1/contacts/{keep.id}/identities/{identity.id}/split", headers=admin_headers
    )
    assert split.status_code == 201, split.text
    new = split.json()
    assert [i["value"] for i in new["identities"]] == ["8613700000000"] and new["inbound_count"] == 1
    timeline = (await client.get(f"/api/v1/contacts/{new['id']}/timeline", headers=admin_headers)).json()
    assert [t["text"] for t in timeline] == ["hi on whatsapp"]
    rest = (await client.get(f"/api/v1/contacts/{keep.id}", headers=admin_headers)).json()
    assert rest["inbound_count"] == 1


async def test_merging_into_itself_or_twice_is_refused_and_changes_nothing(client, session, admin_headers):
    keep, gone = await two_customers(session)
    itself = await client.post(
        f"/api/v1/contacts/{keep.id}/merge", json={"into_id": str(keep.id)}, headers=admin_headers
    )
    assert itself.status_code == 422
    await client.post(
        f"/api/v1/contacts/{gone.id}/merge", json={"into_id": str(keep.id)}, headers=admin_headers
    )
    twice = await client.post(
        f"/api/v1/contacts/{gone.id}/merge", json={"into_id": str(keep.id)}, headers=admin_headers
    )
    assert twice.status_code == 409
    only = await session.scalar(select(func.count()).select_from(ContactTag))
    assert only == 0
