"""Console pages for contacts render in both languages and their forms keep bad input out."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from parley.models import AttributeDefinition, Contact, Tag
from tests.fixtures.factories import create_user, signed_in


@pytest.fixture
async def console(client, session):
    await create_user(session, email="boss@example.com", name="Boss", role="administrator")
    return await signed_in(client, "boss@example.com")


async def test_settings_define_fields_tags_and_lifecycle(console, session):
    http, headers = console.client, console.headers()
    form = {"csrf_token": console.csrf}
    ok = await http.post(
        "/settings/contacts/fields",
        data={**form, "key": "tier", "label": "会员等级", "type": "choice", "options": "金卡，银卡"},
    )
    assert ok.status_code == 303
    bad = await http.post(
        "/settings/contacts/fields", data={**form, "key": "Tier X", "label": "x", "type": "text"}
    )
    assert bad.status_code == 422 and "not a valid key" in bad.text
    await http.post("/settings/contacts/groups", data={**form, "name": "Value", "color": "#b45309"})
    await http.post("/settings/contacts/tags", data={**form, "name": "VIP"})
    bad_rules = await http.post("/settings/contacts/lifecycle", data={**form, "dormant_after_days": "abc"})
    assert bad_rules.status_code == 422
    page = await http.get("/settings/contacts", headers=headers)
    assert "会员等级" in page.text and "VIP" in page.text and "Value" in page.text
    definition = await session.scalar(select(AttributeDefinition))
    assert definition is not None and definition.options == ["金卡", "银卡"]


async def test_list_and_contact_pages_in_chinese(console, session):
    contact = Contact(id=uuid.uuid4(), display_name="刘洋", city="重庆", attributes={})
    session.add(contact)
    session.add(Tag(name="VIP", color=""))
    await session.commit()
    http = console.client
    await http.post(
        "/settings/locale", data={"csrf_token": console.csrf, "locale": "zh_CN", "next": "/contacts"}
    )
    listing = await http.get("/contacts")
    assert listing.status_code == 200 and "刘洋" in listing.text and "导出 CSV" in listing.text
    page = await http.get(f"/contacts/{contact.id}")
    assert page.status_code == 200 and "时间线" in page.text and "刘洋" in page.text
    segments = await http.get("/contacts/segments")
    assert segments.status_code == 200 and "新建分群" in segments.text


async def test_profile_form_with_a_bad_phone_saves_nothing(console, session):
    contact = Contact(id=uuid.uuid4(), display_name="Ann", city="成都", attributes={})
    session.add(contact)
    await session.commit()
    response = await console.client.post(
        f"/contacts/{contact.id}/profile",
        data={"csrf_token": console.csrf, "display_name": "Ann Li", "city": "重庆", "phone": "call me"},
    )
    assert response.status_code == 422
    assert "is not a phone number" in response.text and 'value="call me"' in response.text
    await session.refresh(contact)
    assert (contact.display_name, contact.city) == ("Ann", "成都")


async def test_agent_cannot_open_contact_settings(client, session):
    await create_user(session, email="agent@example.com", role="agent")
    agent = await signed_in(client, "agent@example.com")
    response = await agent.client.get("/settings/contacts")
    assert response.status_code == 403
