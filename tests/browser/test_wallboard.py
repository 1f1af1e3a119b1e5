"""The supervisor's wallboard updates live while a customer waits and an agent accepts."""

from __future__ import annotations

import os

import pytest

from parley.sandbox import wiring
from tests.browser.test_console_people import _login
from tests.fixtures.factories import DEFAULT_PASSWORD, create_token, create_user

pytestmark = pytest.mark.browser


async def test_wallboard_follows_a_waiting_customer_and_the_agent_who_accepts(page, stack, session, tmp_path):
    await create_user(session, email="sue@example.com", name="Sue Supervisor", role="supervisor")
    ann = await create_user(session, email="ann@example.com", name="Ann Agent", role="agent")
    ann_headers = {"Authorization": f"Bearer {await create_token(session, ann)}"}
    account, _account_id = await stack.connect_wechat(mode="safe")
    await wiring.add_wechat_user(
        stack.http, stack.sims.wechat, account.app_id, nickname="王芳", openid="oWallboard"
    )
    api = stack.parley + "/api/v1"
    queue = (
        await stack.http.post(f"{api}/routing/queues", json={"name": "Pre-sales"}, headers=stack.admin)
    ).json()
    member = await stack.http.put(
        f"{api}/routing/queues/{queue['id']}/members", json={"user_id": str(ann.id)}, headers=stack.admin
    )
    assert member.status_code == 204
    rule = await stack.http.post(
        f"{api}/routing/rules",
        json={"name": "Price questions", "queue_id": queue["id"], "conditions": {"keywords": ["价格"]}},
        headers=stack.admin,
    )
    assert rule.status_code == 201

    await _login(page, stack.parley, "sue@example.com", DEFAULT_PASSWORD)
    await page.goto(stack.parley + "/routing")
    await page.wait_for_function("document.getElementById('wallboard').dataset.live === 'true'")
    row = page.locator(f"#wb-queues tr[data-queue='{queue['id']}']")
    await row.locator("td[data-field='waiting']").filter(has_text="0").wait_for()
    await row.locator("td[data-field='offline']").filter(has_text="1").wait_for()

    # The customer asks about prices; Ann is offline, so they wait — the board shows it without a reload.
    await wiring.wechat_action(
        stack.http, stack.sims.wechat, account.app_id, "oWallboard", type="text", content="请问这个多少价格？"
    )
    await row.locator("td[data-field='waiting']").filter(has_text="1").wait_for()
    await page.wait_for_function(
        "document.querySelector(\"td[data-field='longest_wait']\").textContent.trim() !== '—'"
    )
    if os.environ.get("PARLEY_SCREENSHOTS"):
        await page.screenshot(
            path=os.environ["PARLEY_SCREENSHOTS"] + "/wallboard-waiting.png", full_page=True
        )

    # Ann shows up as away (so routing does not hand it to her) and accepts it by hand.
    presence = await stack.http.put(f"{api}/me/presence", json={"presence": "away"}, headers=ann_headers)
    assert presence.status_code == 204
    await row.locator("td[data-field='away']").filter(has_text="1").wait_for()
    listed = (await stack.http.get(f"{api}/conversations?view=unassigned", headers=ann_headers)).json()
    [conversation] = listed["items"]
    accepted = await stack.http.post(f"{api}/conversations/{conversation['id']}/accept", headers=ann_headers)
    assert accepted.status_code == 204
    await row.locator("td[data-field='waiting']").filter(has_text="0").wait_for()
    await row.locator("td[data-field='answered']").filter(has_text="1").wait_for()
    agent = page.locator("#wb-agents tr", has_text="Ann Agent")
    await agent.locator("td[data-field='load']").filter(has_text="1 / 5").wait_for()
    if os.environ.get("PARLEY_SCREENSHOTS"):
        await page.screenshot(
            path=os.environ["PARLEY_SCREENSHOTS"] + "/wallboard-answered.png", full_page=True
        )


async def test_administrator_sets_up_a_queue_in_settings(page, stack, session):
    await create_user(session, email="ann@example.com", name="Ann Agent", role="agent")
    await _login(page, stack.parley, "admin@example.com", DEFAULT_PASSWORD)
    await page.goto(stack.parley + "/settings/routing")
    await page.fill("#new-queue input[name=name]", "After-sales")
    await page.select_option("#new-queue select[name=strategy]", "least_busy")
    await page.click("#new-queue button[type=submit]")
    await page.wait_for_url("**/settings/routing/queues/*")
    await page.fill("input[name=timezone]", "Asia/Shanghai")
    await page.fill("input[name=day_mon]", "09:00-12:00, 13:30-18:00")
    await page.fill("textarea[name=off_hours_reply]", "我们的工作时间是 9:00-18:00。")
    await page.click("#queue-form button[type=submit]")
    await page.locator(".alert.ok").wait_for()
    await page.select_option("#add-member select[name=user_id]", label="Ann Agent")
    await page.click("#add-member button[type=submit]")
    await page.locator("#member-list tr[data-member='Ann Agent']").wait_for()
    if os.environ.get("PARLEY_SCREENSHOTS"):
        await page.screenshot(path=os.environ["PARLEY_SCREENSHOTS"] + "/queue.png", full_page=True)
    await page.goto(stack.parley + "/settings/routing")
    await page.fill("#new-rule input[name=name]", "Menu: after-sales")
    await page.select_option("#new-rule select[name=event]", "menu_click")
    await page.fill("#new-rule input[name=event_key]", "AFTER_SALES")
    await page.click("#new-rule button[type=submit]")
    await page.locator("#rule-list tr[data-rule='Menu: after-sales']").wait_for()
    assert await page.locator("input[name=day_mon]").count() == 0  # back on the overview
    if os.environ.get("PARLEY_SCREENSHOTS"):
        await page.screenshot(path=os.environ["PARLEY_SCREENSHOTS"] + "/settings.png", full_page=True)
