"""The agent console, live: customers write on WeChat and WhatsApp, the agent answers from the browser."""

from __future__ import annotations

import pytest

from parley.sandbox import wiring
from tests.browser.test_console_people import _login
from tests.fixtures.factories import DEFAULT_PASSWORD, create_user

pytestmark = pytest.mark.browser


async def test_wechat_message_appears_live_and_the_reply_reaches_the_customer(page, stack, session):
    await create_user(session, email="li@example.com", name="Li Wei", role="agent")
    account, _account_id = await stack.connect_wechat(mode="safe")
    await wiring.add_wechat_user(
        stack.http, stack.sims.wechat, account.app_id, nickname="王芳", openid="oBrowserWang"
    )

    await _login(page, stack.parley, "li@example.com", DEFAULT_PASSWORD)
    await page.wait_for_url(stack.parley + "/inbox")
    await page.wait_for_function("document.getElementById('inbox').dataset.live === 'true'")

    await wiring.wechat_action(
        stack.http,
        stack.sims.wechat,
        account.app_id,
        "oBrowserWang",
        type="text",
        content="我想改一下收货地址",
    )
    # No reload: the conversation arrives over the websocket.
    item = page.locator(".conv-item", has_text="我想改一下收货地址")
    await item.wait_for(timeout=1000)
    await item.click()
    await page.locator("#messages .msg.in", has_text="我想改一下收货地址").wait_for()

    await page.click("#btn-accept")
    await page.locator("#btn-accept").wait_for(state="hidden")  # taken: the button goes away
    await page.fill("#composer-text", "好的，请把新地址发给我。")
    await page.keyboard.press("Enter")
    await page.locator("#messages .msg.out", has_text="好的，请把新地址发给我。").wait_for()

    async def reached() -> bool:
        record = await wiring.record(
            stack.http, stack.sims.wechat, app_id=account.app_id, openid="oBrowserWang"
        )
        return "好的，请把新地址发给我。" in str(record)

    from tests.fixtures.browser import wait_until

    await wait_until(reached, timeout_s=15)
    # WeChat reports no delivery receipts for customer-service messages: the tick stops at "sent".
    await page.locator("#messages .msg.out .tick[data-status='sent']").wait_for(timeout=10_000)


async def test_whatsapp_ticks_turn_delivered_then_read(page, stack, session):
    await create_user(session, email="li@example.com", name="Li Wei", role="agent")
    account, _account_id = await stack.connect_whatsapp()
    await wiring.add_whatsapp_user(
        stack.http, stack.sims.whatsapp, account.business_account_id, name="Maria", wa_id="5511955554444"
    )
    # The simulator reports each status only when told to, so the test sees every step.
    await stack.http.post(
        f"{stack.sims.whatsapp}/_sandbox/accounts/{account.business_account_id}/limits",
        json={"status_mode": "manual"},
    )
    await _login(page, stack.parley, "li@example.com", DEFAULT_PASSWORD)
    await page.wait_for_function("document.getElementById('inbox').dataset.live === 'true'")
    await wiring.whatsapp_action(
        stack.http,
        stack.sims.whatsapp,
        account.business_account_id,
        "5511955554444",
        type="text",
        text="Where is my parcel?",
    )
    await page.locator(".conv-item", has_text="Where is my parcel?").click()
    await page.fill("#composer-text", "It left the warehouse this morning.")
    await page.click("#btn-send")
    tick = page.locator("#messages .msg.out .tick")
    await page.locator("#messages .msg.out .tick[data-status='sent']").wait_for(timeout=10_000)

    record = await wiring.record(stack.http, stack.sims.whatsapp, to="5511955554444")
    entries = record["entries"] if isinstance(record, dict) else record
    wamid = entries[-1]["wamid"]
    for status in ("delivered", "read"):
        response = await stack.http.post(
            f"{stack.sims.whatsapp}/_sandbox/messages/{wamid}/status", json={"status": status}
        )
        response.raise_for_status()
        await page.locator(f"#messages .msg.out .tick[data-status='{status}']").wait_for(timeout=5_000)
    assert await tick.get_attribute("class") == "tick read"


async def test_outside_the_window_only_templates_are_offered(page, stack, session):
    await create_user(session, email="li@example.com", name="Li Wei", role="agent")
    account, _account_id = await stack.connect_whatsapp()
    await wiring.add_whatsapp_user(
        stack.http, stack.sims.whatsapp, account.business_account_id, name="Ana", wa_id="5511900001111"
    )
    await wiring.whatsapp_action(
        stack.http,
        stack.sims.whatsapp,
        account.business_account_id,
        "5511900001111",
        type="text",
        text="hello?",
    )
    # A day and more passes on the platform and in Parley's stored facts.
    from sqlalchemy import update

    from parley.kit.types import utcnow
    from parley.models import Conversation

    await session.execute(
        update(Conversation).values(last_inbound_at=utcnow().replace(year=utcnow().year - 1))
    )
    await session.commit()
    await _login(page, stack.parley, "li@example.com", DEFAULT_PASSWORD)
    await page.locator(".conv-item", has_text="hello?").click()
    banner = page.locator("#window-banner")
    await banner.wait_for()
    assert "approved template" in await banner.inner_text()
    assert not await page.locator("#composer-text").is_visible()
    await page.locator("#template-picker .template").first.wait_for()
