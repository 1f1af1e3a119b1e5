"""Issue 8 in a real browser: an administrator edits a flow, dry-runs it, and publishes a new version
while a customer's run on the old version is still waiting (and then finishes on the old version)."""

from __future__ import annotations

import pytest

from parley.demo import DEMO_ADMIN, seed_people
from parley.sandbox import wiring
from tests.fixtures.browser import ARTIFACTS

pytestmark = pytest.mark.browser

V1 = """start: ask_day
nodes:
  - id: ask_day
    type: ask
    reply: {type: text, text: "v1: 请问您想预约哪天？"}
    save_as: day
    timeout_s: 3600
    next: check
  - id: check
    type: branch
    branches:
      - when: [{subject: var.day, op: contains, value: "明天"}]
        next: confirm
    default: other
  - id: confirm
    type: send
    reply: {type: text, text: "v1: 好的，已为您预约{{day}}"}
    next: done
  - id: other
    type: send
    reply: {type: text, text: "v1: 我们会联系您确认时间"}
    next: done
  - id: done
    type: end
"""


async def _login(page, base_url: str) -> None:
    await page.goto(base_url + "/login")
    await page.fill("input[name=email]", DEMO_ADMIN.email)
    await page.fill("input[name=password]", DEMO_ADMIN.password)
    await page.click("button[type=submit]")
    await page.wait_for_url(base_url + "/inbox")


async def test_admin_edits_dry_runs_and_publishes_while_an_old_run_finishes_on_its_version(
    page, stack, session
):
    await seed_people(session)
    await session.commit()
    account, account_id = await stack.connect_wechat(mode="safe")
    for openid, name in (("oOld", "老客户"), ("oNew", "新客户")):
        await wiring.add_wechat_user(
            stack.http, stack.sims.wechat, account.app_id, nickname=name, openid=openid
        )
    api = f"{stack.parley}/api/v1/automation"
    flow = (
        await stack.http.post(f"{api}/flows", json={"name": "预约试驾", "source": V1}, headers=stack.admin)
    ).json()
    rule = {
        "account_id": account_id,
        "name": "预约",
        "keywords": [{"text": "预约", "match": "contains"}],
        "flow_id": flow["id"],
    }
    assert (await stack.http.post(f"{api}/rules", json=rule, headers=stack.admin)).status_code == 201

    old = await wiring.wechat_action(
        stack.http, stack.sims.wechat, account.app_id, "oOld", type="text", content="我想预约试驾"
    )
    assert old["reply"]["content"] == "v1: 请问您想预约哪天？"

    base = stack.parley
    await _login(page, base)
    await page.click("nav.mainnav >> text=Automation")
    await page.click("text=Flows")
    await page.click("text=预约试驾")
    await page.wait_for_url(f"{base}/automation/flows/{flow['id']}")
    assert await page.locator("#flow-version").inner_text() == "v1"

    # A broken edit is caught while typing.
    await page.fill("#flow-source", V1.replace("next: confirm", "next: nowhere"))
    await page.locator("#validation.error").wait_for()
    assert "nowhere" in await page.locator("#validation").inner_text()

    edited = V1.replace("v1:", "v2:")
    await page.fill("#flow-source", edited)
    await page.locator("#validation.valid").wait_for()
    await page.fill("#dry-replies", "明天上午")
    await page.click("#dry-run")
    steps = page.locator("#dry-steps li")
    await steps.nth(4).wait_for()
    path = [await steps.nth(i).get_attribute("data-node") for i in range(await steps.count())]
    assert path == ["ask_day", "ask_day", "check", "confirm", "done"]
    assert "v2: 好的，已为您预约明天上午" in await page.locator("#dry-steps").inner_text()
    assert "handed_off" not in await page.locator("#dry-status").inner_text()

    await page.click("#save-version")
    await page.locator("#flow-version", has_text="v2").wait_for()

    # New conversations get v2 at once; the waiting run answers on v1.
    new = await wiring.wechat_action(
        stack.http, stack.sims.wechat, account.app_id, "oNew", type="text", content="预约"
    )
    assert new["reply"]["content"] == "v2: 请问您想预约哪天？"
    finished = await wiring.wechat_action(
        stack.http, stack.sims.wechat, account.app_id, "oOld", type="text", content="明天"
    )
    assert finished["reply"]["content"] == "v1: 好的，已为您预约明天"

    await page.reload()
    runs = await page.locator("#runs").inner_text()
    assert "v1" in runs and "finished" in runs and "v2" in runs and "waiting for a reply" in runs
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "automation-flow-editor.png"), full_page=True)


async def test_agent_sends_a_suggested_article_with_one_click(page, stack, session):
    from tests.browser.test_console_people import _login as login_as
    from tests.fixtures.factories import DEFAULT_PASSWORD, create_user

    await create_user(session, email="li@example.com", name="Li Wei", role="agent")
    account, _account_id = await stack.connect_wechat(mode="safe")
    await wiring.add_wechat_user(stack.http, stack.sims.wechat, account.app_id, nickname="王芳", openid="oKb")
    article = {
        "title": "如何预约保养",
        "body": "您可以在公众号菜单中预约保养，也可以致电门店。",
        "answer": "点击菜单“车辆服务-预约保养”即可预约。",
        "keywords": ["保养", "预约"],
    }
    created = await stack.http.post(
        f"{stack.parley}/api/v1/automation/kb/articles", json=article, headers=stack.admin
    )
    assert created.status_code == 201
    await wiring.wechat_action(
        stack.http, stack.sims.wechat, account.app_id, "oKb", type="text", content="保养怎么预约？"
    )

    await login_as(page, stack.parley, "li@example.com", DEFAULT_PASSWORD)
    await page.wait_for_url(stack.parley + "/inbox")
    await page.locator(".conv-item", has_text="保养怎么预约").click()
    suggestion = page.locator("#kb-suggestions li", has_text="如何预约保养")
    await suggestion.wait_for()
    await suggestion.locator("button.kb-send").click()
    await page.locator("#messages .msg.out", has_text="点击菜单“车辆服务-预约保养”即可预约。").wait_for()

    async def arrived() -> bool:
        record = await wiring.record(stack.http, stack.sims.wechat, app_id=account.app_id, openid="oKb")
        entries = record["entries"] if isinstance(record, dict) else record
        return any("即可预约" in str(e.get("content")) for e in entries)

    from tests.fixtures.browser import wait_until

    await wait_until(arrived, timeout_s=20)
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "automation-kb-suggestions.png"), full_page=True)
