"""Issue 6's browser acceptance: filter by tag, open a contact, see the cross-channel timeline, and
edit an attribute: an invalid value is explained and nothing is saved; a valid one is."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from parley.contacts.merge import merge_contacts
from parley.models import Contact, ContactIdentity
from parley.sandbox import wiring
from tests.browser.test_console_people import _login
from tests.fixtures.browser import wait_until
from tests.fixtures.factories import DEFAULT_PASSWORD, create_user

pytestmark = pytest.mark.browser
SHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


async def _contact_of(session, kind: str, value: str) -> uuid.UUID:
    async def found() -> bool:
        session.expire_all()
        return (
            await session.scalar(select(ContactIdentity.contact_id).where(ContactIdentity.value == value))
            is not None
        )

    await wait_until(found, timeout_s=15, interval_s=0.2)
    contact_id = await session.scalar(
        select(ContactIdentity.contact_id).where(ContactIdentity.kind == kind, ContactIdentity.value == value)
    )
    assert contact_id is not None
    return contact_id


async def test_agent_filters_by_tag_opens_contact_sees_timeline_and_edits_attribute(page, stack, session):
    await create_user(session, email="li@example.com", name="Li Wei", role="agent")
    wechat, _ = await stack.connect_wechat(mode="safe")
    whatsapp, _ = await stack.connect_whatsapp()
    await wiring.add_wechat_user(
        stack.http, stack.sims.wechat, wechat.app_id, nickname="王芳", openid="oWangFang"
    )
    await wiring.wechat_action(
        stack.http, stack.sims.wechat, wechat.app_id, "oWangFang", type="text", content="微信上问一下发货"
    )
    await wiring.add_whatsapp_user(
        stack.http, stack.sims.whatsapp, whatsapp.business_account_id, name="Wang Fang", wa_id="8613900001111"
    )
    await wiring.whatsapp_action(
        stack.http,
        stack.sims.whatsapp,
        whatsapp.business_account_id,
        "8613900001111",
        type="text",
        text="Same question on WhatsApp",
    )
    await wiring.add_whatsapp_user(
        stack.http,
        stack.sims.whatsapp,
        whatsapp.business_account_id,
        name="Someone Else",
        wa_id="8613900002222",
    )
    await wiring.whatsapp_action(
        stack.http,
        stack.sims.whatsapp,
        whatsapp.business_account_id,
        "8613900002222",
        type="text",
        text="Hello",
    )
    on_wechat = await _contact_of(session, "wechat_openid", "oWangFang")
    on_whatsapp = await _contact_of(session, "whatsapp_id", "8613900001111")
    await _contact_of(session, "whatsapp_id", "8613900002222")
    # The agent learnt they are one person: the two records are merged (as the merge action does).
    source = await session.get(Contact, on_whatsapp)
    target = await session.get(Contact, on_wechat)
    assert source is not None and target is not None
    await merge_contacts(session, source=source, target=target, reason="same person")
    await session.commit()

    spend = await stack.http.post(
        f"{stack.parley}/api/v1/contact-fields",
        json={"key": "spend", "label": "Annual spend", "type": "number"},
        headers=stack.admin,
    )
    assert spend.status_code == 201
    vip = (
        await stack.http.post(f"{stack.parley}/api/v1/tags", json={"name": "VIP"}, headers=stack.admin)
    ).json()
    await stack.http.post(
        f"{stack.parley}/api/v1/contacts/{on_wechat}/tags", json={"tag_ids": [vip["id"]]}, headers=stack.admin
    )

    await _login(page, stack.parley, "li@example.com", DEFAULT_PASSWORD)
    await page.wait_for_url(stack.parley + "/inbox")
    await page.goto(stack.parley + "/contacts")
    await page.locator("[data-contact-row]").nth(1).wait_for()
    assert await page.locator("[data-contact-row]").count() == 2

    await page.select_option("select[name=tag_id]", label="VIP")
    await page.click(".contact-filters button[type=submit]")
    await page.wait_for_url("**/contacts?*tag_id=*")
    rows = page.locator("[data-contact-row]")
    assert await rows.count() == 1
    await rows.first.locator("a.contact-link").click()
    await page.wait_for_url(f"**/contacts/{on_wechat}")

    timeline = page.get_by_test_id("timeline")
    await timeline.get_by_text("微信上问一下发货").wait_for()
    await timeline.get_by_text("Same question on WhatsApp").wait_for()
    assert await timeline.locator(".tl-message", has_text=wechat.name).count() == 1
    assert await timeline.locator(".tl-message", has_text=whatsapp.name).count() == 1
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / "contact-360.png"), full_page=True)

    field = page.locator("[data-field=spend] input")
    await field.fill("twelve hundred")
    await page.click("[data-testid=profile-form] button[type=submit]")
    error = page.get_by_test_id("error-spend")
    await error.wait_for()
    assert "is not a number" in await error.inner_text()
    await page.get_by_test_id("form-errors").wait_for()
    await session.rollback()  # a fresh snapshot: what the server committed
    stored = await session.scalar(select(Contact.attributes).where(Contact.id == on_wechat))
    assert "spend" not in (stored or {})
    await page.screenshot(path=str(SHOTS / "contact-invalid.png"), full_page=True)

    await page.locator("[data-field=spend] input").fill("12,000")
    await page.click("[data-testid=profile-form] button[type=submit]")
    await page.wait_for_url(f"**/contacts/{on_wechat}?saved=1")
    assert await page.locator("[data-field=spend] input").input_value() == "12000"
    await session.rollback()  # a fresh snapshot: what the server committed
    stored = await session.scalar(select(Contact.attributes).where(Contact.id == on_wechat))
    assert stored is not None and stored["spend"] == 12000


async def test_segment_editor_counts_live_and_saves(page, live_server, session):
    from datetime import UTC, datetime, timedelta

    from parley.contacts.tags import apply_tags

    await create_user(session, email="boss@example.com", name="Boss", role="administrator")
    recent = datetime.now(UTC) - timedelta(days=3)
    people = [
        Contact(
            id=uuid.uuid4(), display_name=f"C{i}", attributes={}, last_followed_at=recent if i < 3 else None
        )
        for i in range(5)
    ]
    session.add_all(people)
    await session.flush()
    await apply_tags(session, [p.id for p in people[:4]], ["VIP"], "agent")
    await session.commit()

    await _login(page, live_server.url, "boss@example.com", DEFAULT_PASSWORD)
    await page.wait_for_url(live_server.url + "/inbox")
    await page.goto(live_server.url + "/contacts/segments")
    count = page.locator("[data-count]")
    await page.wait_for_function("document.querySelector('[data-count]').textContent === '5'")
    await page.select_option("[data-add-kind]", "tag")
    await page.click("[data-add]")
    await page.wait_for_function("document.querySelector('[data-count]').textContent === '4'")
    await page.select_option("[data-add-kind]", "activity")
    await page.click("[data-add]")
    await page.wait_for_function("document.querySelector('[data-count]').textContent === '3'")
    await page.locator("[data-condition=activity] input").fill("1")
    await page.wait_for_function("document.querySelector('[data-count]').textContent === '0'")
    await page.locator("[data-condition=activity] input").fill("30")
    await page.wait_for_function("document.querySelector('[data-count]').textContent === '3'")
    assert await count.inner_text() == "3"
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / "segment-editor.png"), full_page=True)
    await page.fill("[data-segment-name]", "Recent VIPs")
    await page.click("[data-save]")
    await page.wait_for_url("**/contacts/segments?id=*")
    await page.get_by_role("link", name="Show contacts").click()
    await page.wait_for_url("**/contacts?segment_id=*")
    assert await page.locator("[data-contact-row]").count() == 3
