"""The console in a real browser: the demo administrator sets up a colleague and a team."""

from __future__ import annotations

import pytest

from parley.demo import DEMO_ADMIN, seed_people
from tests.fixtures.browser import ARTIFACTS

pytestmark = pytest.mark.browser


async def _login(page, base_url: str, email: str, password: str) -> None:
    await page.goto(base_url + "/login")
    await page.fill("input[name=email]", email)
    await page.fill("input[name=password]", password)
    await page.click("button[type=submit]")


async def test_admin_creates_agent_and_team_then_agent_signs_in(page, live_server, session):
    await seed_people(session)
    await session.commit()
    base = live_server.url

    await _login(page, base, DEMO_ADMIN.email, DEMO_ADMIN.password)
    await page.wait_for_url(base + "/inbox")
    await page.click("nav.mainnav >> text=Settings")
    await page.wait_for_url(base + "/settings/users")

    await page.click("text=New user")
    await page.fill("input[name=email]", "new.agent@example.com")
    await page.fill("input[name=name]", "Nina Newagent")
    await page.fill("input[name=password]", "nina-password-1")
    await page.select_option("select[name=role]", "agent")
    await page.click("button:has-text('Save')")
    await page.wait_for_url(base + "/settings/users?created=1")
    row = page.locator("tr[data-email='new.agent@example.com']")
    await row.wait_for()
    assert "Agent" in await row.inner_text()

    await page.click("aside >> text=Teams")
    await page.click("text=New team")
    await page.fill("input[name=name]", "Chongqing desk")
    await page.check("label:has-text('Nina Newagent') input")
    await page.click("button:has-text('Save')")
    await page.wait_for_url(base + "/settings/teams")
    assert "Nina Newagent" in await page.locator("tr[data-team='Chongqing desk']").inner_text()

    await page.click("aside >> text=Audit log")
    audit = await page.locator("table.audit").inner_text()
    assert "team.create" in audit and "user.create" in audit and DEMO_ADMIN.email in audit

    await page.click("button:has-text('Sign out')")
    await page.wait_for_url(base + "/login")

    await _login(page, base, "new.agent@example.com", "nina-password-1")
    await page.wait_for_url(base + "/inbox")
    assert await page.locator(".usermenu .username").inner_text() == "Nina Newagent"
    nav = await page.locator("nav.mainnav").inner_text()
    assert "Inbox" in nav and "Marketing" not in nav  # agents don't run campaigns
    await page.goto(base + "/settings/users")
    assert "You do not have permission" in await page.locator("main").inner_text()


async def test_switching_to_chinese_translates_the_console(page, live_server, session):
    await seed_people(session)
    await session.commit()
    base = live_server.url
    await _login(page, base, DEMO_ADMIN.email, DEMO_ADMIN.password)
    await page.wait_for_url(base + "/inbox")
    await page.select_option("#locale-switch", "zh_CN")
    await page.wait_for_selector("nav.mainnav >> text=收件箱")
    nav = await page.locator("nav.mainnav").inner_text()
    assert "收件箱" in nav and "客户" in nav and "设置" in nav
    await page.click("nav.mainnav >> text=设置")
    await page.wait_for_selector("h1:has-text('用户')")
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "settings-users-zh.png"), full_page=True)


async def test_wrong_password_then_login_page_in_chinese(page, live_server, session):
    await seed_people(session)
    await session.commit()
    base = live_server.url
    await page.goto(base + "/login?lang=zh_CN")
    assert await page.locator("button[type=submit]").inner_text() == "登录"
    await page.fill("input[name=email]", DEMO_ADMIN.email)
    await page.fill("input[name=password]", "not-the-password")
    await page.click("button[type=submit]")
    assert "邮箱或密码错误" in await page.locator(".alert.error").inner_text()
