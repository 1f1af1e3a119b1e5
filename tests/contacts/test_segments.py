"""Segments: the filter tree, compiled to SQL, gives the same contacts on both databases."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from parley.contacts import segments
from parley.contacts.tags import apply_tags
from parley.exceptions import UnprocessableEntity
from parley.models import ChannelAccount, Contact, ContactIdentity, Tag
from tests.fixtures.factories import create_channel_account

NOW = datetime.now(UTC)


def days_ago(n: float) -> datetime:
    return NOW - timedelta(days=n)


@pytest.fixture
async def people(session) -> dict[str, Contact]:
    """Five customers with distinct profiles, tags, attributes, channels and activity."""
    cq = await create_channel_account(session, name="重庆号", external_id="gh_cq")
    wa = await create_channel_account(session, type="whatsapp", name="WA", external_id="wa_1")
    rows = {
        "vip_gold_recent": Contact(
            display_name="Ann",
            city="重庆",
            attributes={"tier": "gold", "spend": 900, "likes": ["hotpot", "tea"]},
            last_followed_at=days_ago(3),
            last_inbound_at=days_ago(2),
            lifecycle_stage="active",
        ),
        "vip_gold_old": Contact(
            display_name="Bob",
            city="重庆",
            attributes={"tier": "gold", "spend": 100, "likes": ["tea"]},
            last_followed_at=days_ago(90),
            last_inbound_at=days_ago(80),
            lifecycle_stage="dormant",
        ),
        "silver_recent": Contact(
            display_name="Cai",
            city="成都",
            attributes={"tier": "silver", "spend": 5000, "vip_member": True},
            last_followed_at=days_ago(10),
            last_outbound_at=days_ago(1),
            lifecycle_stage="active",
        ),
        "silent": Contact(
            display_name="Dan",
            city="北京",
            attributes={},
            last_inbound_at=days_ago(100),
            last_outbound_at=days_ago(70),
            lifecycle_stage="dormant",
        ),
        "whatsapp_only": Contact(
            display_name="Eve",
            city="",
            email="eve@example.com",
            attributes={"likes": ["hotpot"]},
            lifecycle_stage="new",
        ),
    }
    for contact in rows.values():
        contact.id = uuid.uuid4()
        session.add(contact)
    await session.flush()
    await apply_tags(session, [rows["vip_gold_recent"].id, rows["vip_gold_old"].id], ["VIP"], "agent")
    await apply_tags(
        session, [rows["vip_gold_recent"].id, rows["silver_recent"].id], ["Newsletter"], "import"
    )
    for key in ("vip_gold_recent", "vip_gold_old", "silver_recent", "silent"):
        session.add(
            ContactIdentity(
                contact_id=rows[key].id,
                account_id=cq.id,
                kind="wechat_openid",
                scope=str(cq.id),
                value=f"o-{key}",
            )
        )
    session.add(
        ContactIdentity(
            contact_id=rows["whatsapp_only"].id,
            account_id=wa.id,
            kind="whatsapp_id",
            scope=str(wa.id),
            value="5511999",
        )
    )
    merged = Contact(
        id=uuid.uuid4(),
        display_name="Merged away",
        city="重庆",
        attributes={"tier": "gold"},
        merged_into_id=rows["vip_gold_recent"].id,
    )
    session.add(merged)
    await session.commit()
    return rows


async def tag_id(session, name: str) -> str:
    return str(await session.scalar(select(Tag.id).where(Tag.name == name)))


async def matches(session, people, definition) -> set[str]:
    group = segments.parse_filter({"type": "group", "match": "all", **definition})
    ids = set((await session.scalars(segments.segment_contact_ids_query(group))).all())
    assert await segments.count(session, group) == len(ids)
    return {key for key, contact in people.items() if contact.id in ids}


class TestConditions:
    async def test_tag_attribute_and_activity_together(self, session, people):
        vip = await tag_id(session, "VIP")
        found = await matches(
            session,
            people,
            {
                "conditions": [
                    {"type": "tag", "op": "any", "tag_ids": [vip]},
                    {"type": "attribute", "key": "tier", "op": "eq", "value": "gold"},
                    {"type": "activity", "event": "followed", "op": "within", "days": 30},
                ]
            },
        )
        assert found == {"vip_gold_recent"}

    async def test_tag_all_and_none(self, session, people):
        vip, news = await tag_id(session, "VIP"), await tag_id(session, "Newsletter")
        assert await matches(
            session, people, {"conditions": [{"type": "tag", "op": "all", "tag_ids": [vip, news]}]}
        ) == {"vip_gold_recent"}
        assert await matches(
            session, people, {"conditions": [{"type": "tag", "op": "none", "tag_ids": [vip, news]}]}
        ) == {"silent", "whatsapp_only"}

    async def test_no_conversation_for_60_days(self, session, people):
        found = await matches(
            session,
            people,
            {
                "conditions": [
                    {"type": "activity", "event": "conversation", "op": "not_within", "days": 60},
                ]
            },
        )
        # Never talked counts as silent too; Cai wrote nothing but we wrote to them yesterday.
        assert found == {"vip_gold_old", "silent", "whatsapp_only"}

    async def test_numbers_compare_as_numbers_and_choices_match_whole_options(self, session, people):
        assert await matches(
            session,
            people,
            {
                "conditions": [
                    {"type": "attribute", "key": "spend", "op": "gte", "value": 900},
                ]
            },
        ) == {"vip_gold_recent", "silver_recent"}
        assert await matches(
            session,
            people,
            {
                "conditions": [
                    {"type": "attribute", "key": "likes", "op": "has", "value": "hotpot"},
                ]
            },
        ) == {"vip_gold_recent", "whatsapp_only"}
        assert await matches(
            session,
            people,
            {
                "conditions": [
                    {"type": "attribute", "key": "vip_member", "op": "eq", "value": True},
                ]
            },
        ) == {"silver_recent"}
        assert await matches(
            session,
            people,
            {
                "conditions": [
                    {"type": "attribute", "key": "tier", "op": "empty"},
                ]
            },
        ) == {"silent", "whatsapp_only"}

    async def test_fields_stage_channel_account_and_any(self, session, people):
        cq = await session.scalar(select(ChannelAccount.id).where(ChannelAccount.external_id == "gh_cq"))
        assert await matches(
            session, people, {"conditions": [{"type": "field", "field": "city", "op": "eq", "value": "重庆"}]}
        ) == {"vip_gold_recent", "vip_gold_old"}
        assert await matches(
            session, people, {"conditions": [{"type": "stage", "op": "in", "stages": ["dormant"]}]}
        ) == {"vip_gold_old", "silent"}
        assert await matches(
            session, people, {"conditions": [{"type": "channel", "op": "is", "channel": "whatsapp"}]}
        ) == {"whatsapp_only"}
        assert await matches(
            session, people, {"conditions": [{"type": "channel", "op": "is_not", "account_id": str(cq)}]}
        ) == {"whatsapp_only"}
        assert await matches(
            session,
            people,
            {
                "match": "any",
                "conditions": [
                    {"type": "field", "field": "email", "op": "not_empty"},
                    {"type": "attribute", "key": "tier", "op": "eq", "value": "silver"},
                ],
            },
        ) == {"silver_recent", "whatsapp_only"}

    async def test_nested_groups(self, session, people):
        vip = await tag_id(session, "VIP")
        found = await matches(
            session,
            people,
            {
                "conditions": [
                    {"type": "tag", "op": "any", "tag_ids": [vip]},
                    {
                        "type": "group",
                        "match": "any",
                        "conditions": [
                            {"type": "activity", "event": "followed", "op": "within", "days": 7},
                            {"type": "attribute", "key": "spend", "op": "lt", "value": 500},
                        ],
                    },
                ]
            },
        )
        assert found == {"vip_gold_recent", "vip_gold_old"}

    async def test_merged_away_contacts_are_never_counted(self, session, people):
        found = await matches(session, people, {"conditions": []})
        assert found == set(people)
        assert await segments.count(session, segments.parse_filter({"conditions": []})) == 5

    async def test_merged_away_contacts_are_not_counted_under_a_tag_or_an_intersection(self, session, people):
        # A tag alone drives the count by joining its contacts; two selective sets are intersected.
        merged = await session.scalar(select(Contact.id).where(Contact.merged_into_id.is_not(None)))
        await apply_tags(session, [merged], ["VIP", "Newsletter"], "agent")
        await session.execute(
            update(Contact).where(Contact.id == merged).values(last_followed_at=days_ago(1))
        )
        vip, news = await tag_id(session, "VIP"), await tag_id(session, "Newsletter")
        assert await matches(
            session,
            people,
            {
                "conditions": [
                    {"type": "tag", "op": "any", "tag_ids": [vip]},
                    {"type": "activity", "event": "followed", "op": "within", "days": 30},
                ]
            },
        ) == {"vip_gold_recent"}
        assert await matches(
            session,
            people,
            {
                "conditions": [
                    {"type": "tag", "op": "all", "tag_ids": [vip, news]},
                    {"type": "attribute", "key": "tier", "op": "eq", "value": "gold"},
                    {"type": "activity", "event": "followed", "op": "ever"},
                ]
            },
        ) == {"vip_gold_recent"}


class TestValidation:
    @pytest.mark.parametrize(
        ("definition", "message"),
        [
            ({"conditions": [{"type": "colour"}]}, "conditions.0"),
            (
                {"conditions": [{"type": "field", "field": "password", "op": "eq", "value": "x"}]},
                "filterable",
            ),
            ({"conditions": [{"type": "activity", "event": "followed", "op": "within"}]}, "number of days"),
            ({"conditions": [{"type": "attribute", "key": "tier", "op": "eq"}]}, "needs a value"),
            ({"conditions": [{"type": "tag", "op": "any", "tag_ids": []}]}, "conditions.0"),
        ],
    )
    def test_bad_filters_say_what_is_wrong(self, definition, message):
        with pytest.raises(UnprocessableEntity) as caught:
            segments.parse_filter(definition)
        assert message in caught.value.message


class TestEndpoints:
    async def test_live_count_save_and_list_by_segment(self, client, session, admin_headers, people):
        vip = await tag_id(session, "VIP")
        definition = {
            "type": "group",
            "match": "all",
            "conditions": [{"type": "tag", "op": "any", "tag_ids": [vip]}],
        }
        live = await client.post(
            "/api/v1/segments/count", json={"definition": definition}, headers=admin_headers
        )
        assert live.json()["count"] == 2
        bad = await client.post(
            "/api/v1/segments/count",
            json={"definition": {"conditions": [{"type": "nope"}]}},
            headers=admin_headers,
        )
        assert bad.status_code == 422
        saved = await client.post(
            "/api/v1/segments", json={"name": "VIPs", "definition": definition}, headers=admin_headers
        )
        assert saved.status_code == 201
        segment_id = saved.json()["id"]
        listed = await client.get(
            "/api/v1/contacts", params={"segment_id": segment_id}, headers=admin_headers
        )
        assert sorted(c["display_name"] for c in listed.json()["items"]) == ["Ann", "Bob"]
        count = await client.get(f"/api/v1/segments/{segment_id}/count", headers=admin_headers)
        assert count.json()["count"] == 2
        duplicate = await client.post(
            "/api/v1/segments", json={"name": "VIPs", "definition": definition}, headers=admin_headers
        )
        assert duplicate.status_code == 409
