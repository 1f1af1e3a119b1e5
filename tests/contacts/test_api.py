"""Tags, contact fields, validated profile edits, bulk actions and export through the REST API."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from openpyxl import load_workbook
from sqlalchemy import func, select

from parley.models import AuditLog, Contact, ContactTag
from tests.fixtures.factories import create_user


async def make_contact(session, name: str = "Li Lei", **values) -> Contact:
    contact = Contact(id=uuid.uuid4(), display_name=name, attributes=values.pop("attributes", {}), **values)
    session.add(contact)
    await session.commit()
    return contact


async def define(client, headers, **body) -> dict:
    response = await client.post("/api/v1/contact-fields", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


class TestTags:
    async def test_group_colour_is_the_default_for_its_tags(self, client, admin_headers):
        group = (
            await client.post(
                "/api/v1/tag-groups", json={"name": "Value", "color": "#B45309"}, headers=admin_headers
            )
        ).json()
        plain = await client.post(
            "/api/v1/tags", json={"name": "VIP", "group_id": group["id"]}, headers=admin_headers
        )
        own = await client.post(
            "/api/v1/tags",
            json={"name": "Whale", "group_id": group["id"], "color": "#123456"},
            headers=admin_headers,
        )
        assert plain.json()["color"] == "#b45309"
        assert own.json()["color"] == "#123456"

    async def test_bad_colour_and_duplicate_name_are_refused(self, client, admin_headers):
        bad = await client.post(
            "/api/v1/tag-groups", json={"name": "X", "color": "red"}, headers=admin_headers
        )
        assert bad.status_code == 422 and "colour" in bad.json()["detail"]
        await client.post("/api/v1/tags", json={"name": "VIP"}, headers=admin_headers)
        again = await client.post("/api/v1/tags", json={"name": "VIP"}, headers=admin_headers)
        assert again.status_code == 409

    async def test_bulk_tag_and_untag_count_changes_and_record_the_agent(
        self, client, session, admin, admin_headers
    ):
        a, b = await make_contact(session, "A"), await make_contact(session, "B")
        vip = (await client.post("/api/v1/tags", json={"name": "VIP"}, headers=admin_headers)).json()
        first = await client.post(
            "/api/v1/contacts/bulk/tag",
            json={"contact_ids": [str(a.id)], "tag_ids": [vip["id"]]},
            headers=admin_headers,
        )
        assert first.json() == {"contacts": 1, "changed": 1}
        both = await client.post(
            "/api/v1/contacts/bulk/tag",
            json={"contact_ids": [str(a.id), str(b.id)], "tag_ids": [vip["id"]]},
            headers=admin_headers,
        )
        # A is tagged already: only B changes, and no duplicate row appears.
        assert both.json() == {"contacts": 2, "changed": 1}
        rows = (await session.scalars(select(ContactTag))).all()
        assert len(rows) == 2 and {r.added_by_id for r in rows} == {admin.id}
        tags = (await client.get("/api/v1/tags", headers=admin_headers)).json()
        assert tags[0]["contacts"] == 2
        untag = await client.post(
            "/api/v1/contacts/bulk/untag",
            json={"all_matching": True, "tag_id": vip["id"], "tag_ids": [vip["id"]]},
            headers=admin_headers,
        )
        assert untag.json() == {"contacts": 2, "changed": 2}

    async def test_tagging_by_name_creates_missing_tags(self, client, session, admin_headers):
        contact = await make_contact(session)
        response = await client.post(
            f"/api/v1/contacts/{contact.id}/tags", json={"tag_names": ["重庆", "VIP"]}, headers=admin_headers
        )
        assert sorted(t["name"] for t in response.json()["tags"]) == ["VIP", "重庆"]

    async def test_unknown_tag_is_422_and_tags_nothing(self, client, session, admin_headers):
        contact = await make_contact(session)
        response = await client.post(
            "/api/v1/contacts/bulk/tag",
            json={"contact_ids": [str(contact.id)], "tag_ids": [str(uuid.uuid4())]},
            headers=admin_headers,
        )
        assert response.status_code == 422
        assert await session.scalar(select(func.count()).select_from(ContactTag)) == 0


class TestProfileAndAttributes:
    async def test_invalid_values_are_explained_and_nothing_is_saved(self, client, session, admin_headers):
        await define(
            client, admin_headers, key="tier", label="Tier", type="choice", options=["gold", "silver"]
        )
        await define(client, admin_headers, key="spend", label="Spend", type="number")
        contact = await make_contact(session, city="成都")
        response = await client.patch(
            f"/api/v1/contacts/{contact.id}",
            json={
                "profile": {"city": "重庆", "email": "not-an-email"},
                "attributes": {"tier": "platinum", "spend": "12.5"},
            },
            headers=admin_headers,
        )
        assert response.status_code == 422
        errors = response.json()["errors"]
        assert set(errors) == {"email", "tier"}
        assert "gold, silver" in errors["tier"]
        await session.refresh(contact)
        assert contact.city == "成都" and contact.attributes == {}

    async def test_valid_values_are_stored_typed_and_audited(self, client, session, admin, admin_headers):
        await define(client, admin_headers, key="spend", label="Spend", type="number")
        await define(client, admin_headers, key="since", label="Customer since", type="date")
        await define(
            client, admin_headers, key="likes", label="Likes", type="multi_choice", options=["tea", "hotpot"]
        )
        contact = await make_contact(session)
        response = await client.patch(
            f"/api/v1/contacts/{contact.id}",
            json={
                "profile": {"phone": "138 0013 8000", "birthday": "1990-05-04", "gender": "女"},
                "attributes": {"spend": "1,200", "since": "2024/03/01", "likes": "hotpot, tea"},
                "owner_id": str(admin.id),
            },
            headers=admin_headers,
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["phone"] == "+13800138000" and body["gender"] == "female"
        assert body["attributes"] == {"spend": 1200, "since": "2024-03-01", "likes": ["tea", "hotpot"]}
        assert body["owner_id"] == str(admin.id)
        audit = await session.scalar(select(AuditLog).where(AuditLog.action == "contact.update"))
        assert audit is not None and audit.changes["attributes.spend"] == [None, 1200]

    async def test_inactive_owner_is_refused(self, client, session, admin_headers):
        other = await create_user(session, email="gone@example.com", name="Gone")
        other.is_active = False
        await session.commit()
        contact = await make_contact(session)
        response = await client.patch(
            f"/api/v1/contacts/{contact.id}", json={"owner_id": str(other.id)}, headers=admin_headers
        )
        assert response.status_code == 422 and "owner_id" in response.json()["errors"]

    async def test_field_definitions_are_validated(self, client, admin_headers):
        bad_key = await client.post(
            "/api/v1/contact-fields",
            json={"key": "Tier!", "label": "T", "type": "text"},
            headers=admin_headers,
        )
        no_options = await client.post(
            "/api/v1/contact-fields",
            json={"key": "tier", "label": "T", "type": "choice"},
            headers=admin_headers,
        )
        standard = await client.post(
            "/api/v1/contact-fields",
            json={"key": "city", "label": "C", "type": "text"},
            headers=admin_headers,
        )
        assert [r.status_code for r in (bad_key, no_options, standard)] == [422, 422, 422]

    async def test_agents_cannot_define_fields(self, client, session):
        from tests.fixtures.factories import create_token

        agent = await create_user(session, email="agent@example.com", role="agent")
        token = await create_token(session, agent)
        response = await client.post(
            "/api/v1/contact-fields",
            json={"key": "tier", "label": "T", "type": "text"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 403


class TestListAndExport:
    async def test_search_by_name_phone_identity_and_tag(self, client, session, admin_headers):
        from parley.models import ContactIdentity

        wang = await make_contact(session, "王小明", phone="+8613800001111")
        await make_contact(session, "Maria")
        session.add(ContactIdentity(contact_id=wang.id, kind="wechat_openid", scope="x", value="oABC123"))
        await session.commit()

        async def names(**params) -> list[str]:
            response = await client.get("/api/v1/contacts", params=params, headers=admin_headers)
            return sorted(c["display_name"] for c in response.json()["items"])

        assert await names(q="小明") == ["王小明"]
        assert await names(q="0000 1111") == ["王小明"]
        assert await names(q="oABC123") == ["王小明"]
        vip = (await client.post("/api/v1/tags", json={"name": "VIP"}, headers=admin_headers)).json()
        await client.post(
            f"/api/v1/contacts/{wang.id}/tags", json={"tag_ids": [vip["id"]]}, headers=admin_headers
        )
        assert await names(tag_id=vip["id"]) == ["王小明"]
        assert await names() == ["Maria", "王小明"]

    async def test_export_csv_and_xlsx_hold_fields_tags_and_attributes(self, client, session, admin_headers):
        await define(client, admin_headers, key="tier", label="Tier", type="choice", options=["gold"])
        contact = await make_contact(session, "=cmd|' /C calc'!A0", city="重庆", attributes={"tier": "gold"})
        await client.post(
            f"/api/v1/contacts/{contact.id}/tags", json={"tag_names": ["VIP"]}, headers=admin_headers
        )
        await make_contact(session, "Other")
        response = await client.get(
            "/api/v1/contacts/export", params={"format": "csv", "q": "calc"}, headers=admin_headers
        )
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
        rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
        header, line = rows[0], rows[1]
        assert len(rows) == 2
        record = dict(zip(header, line, strict=True))
        # A formula-looking name is neutralised for spreadsheets.
        assert record["Name"].startswith("'=")
        assert (record["City"], record["Tags"], record["Tier"]) == ("重庆", "VIP", "gold")
        xlsx = await client.get("/api/v1/contacts/export", params={"format": "xlsx"}, headers=admin_headers)
        sheet = load_workbook(io.BytesIO(xlsx.content)).active
        values = list(sheet.values)
        assert len(values) == 3 and values[0][:2] == ("ID", "Name")

    async def test_bulk_owner_on_all_matching(self, client, session, admin, admin_headers):
        for i in range(3):
            await make_contact(session, f"Chongqing {i}", city="重庆")
        await make_contact(session, "Elsewhere", city="成都")
        response = await client.post(
            "/api/v1/contacts/bulk/owner",
            json={"all_matching": True, "q": "Chongqing", "owner_id": str(admin.id)},
            headers=admin_headers,
        )
        assert response.json() == {"contacts": 3, "changed": 3}
        owned = await session.scalar(
            select(func.count()).select_from(Contact).where(Contact.owner_id == admin.id)
        )
        assert owned == 3

    async def test_empty_selection_is_refused(self, client, admin_headers):
        response = await client.post(
            "/api/v1/contacts/bulk/owner", json={"contact_ids": []}, headers=admin_headers
        )
        assert response.status_code == 422


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC)


class TestTimeline:
    async def test_locations_are_a_history(self, client, session, admin_headers, now):
        from parley.models import TimelineEvent

        contact = await make_contact(session)
        for i in range(3):
            session.add(
                TimelineEvent(
                    contact_id=contact.id,
                    type="location_report",
                    data={"location": {"latitude": 29.5 + i / 100, "longitude": 106.5, "precision": 30}},
                    occurred_at=now - timedelta(hours=i),
                )
            )
        await session.commit()
        track = (await client.get(f"/api/v1/contacts/{contact.id}/locations", headers=admin_headers)).json()
        assert [p["latitude"] for p in track] == [29.5, 29.51, 29.52]


async def test_refresh_profile_queues_the_wechat_identities_again(client, session, admin_headers):
    from parley.kit.types import utcnow
    from parley.models import ContactIdentity

    contact = await make_contact(session)
    identity = ContactIdentity(
        contact_id=contact.id, kind="wechat_openid", scope="acc", value="oRefresh", profile_synced_at=utcnow()
    )
    session.add(identity)
    await session.commit()
    response = await client.post(f"/api/v1/contacts/{contact.id}/refresh-profile", headers=admin_headers)
    assert response.status_code == 202 and response.json() == {"identities": 1}
    await session.refresh(identity)
    assert identity.profile_synced_at is None
