"""The automation console pages render in both languages, and only for people allowed to see them."""

from __future__ import annotations

import pytest

from tests.automation.support import _account, create_rule, vin_flow
from tests.fixtures.factories import create_user, signed_in


@pytest.mark.parametrize(
    ("locale", "title", "tab"), [("en", "Automation", "Knowledge base"), ("zh_CN", "自动化", "知识库")]
)
async def test_every_automation_page_renders_in_the_user_language(
    client, session, admin_headers, locale, title, tab
):
    account = await _account(client, admin_headers, "wechat", mode="plain")
    flow = (
        await client.post(
            "/api/v1/automation/flows",
            json={"name": "VIN", "definition": vin_flow("http://127.0.0.1:9/vin")},
            headers=admin_headers,
        )
    ).json()
    await create_rule(
        client, admin_headers, account, name="退款规则", keywords=[{"text": "退款"}], replies=[{"text": "ok"}]
    )
    await client.post(
        "/api/v1/automation/kb/articles",
        json={"title": "如何预约保养", "body": "菜单预约"},
        headers=admin_headers,
    )
    await create_user(
        session, email=f"boss-{locale}@example.com", name="Boss", role="administrator", locale=locale
    )
    console = await signed_in(client, f"boss-{locale}@example.com")
    for path, expected in [
        (f"/automation?account_id={account}", "退款规则"),
        ("/automation/flows", "VIN"),
        (f"/automation/flows/{flow['id']}", "ask_vin"),
        ("/automation/menus", 'id="menu-source"'),
        ("/automation/kb?q=预约", "如何预约保养"),
    ]:
        page = await console.client.get(path)
        assert page.status_code == 200, path
        assert title in page.text and tab in page.text and expected in page.text, path


async def test_agents_do_not_see_automation(client, session):
    await create_user(session, email="agent@example.com", name="Agent", role="agent")
    console = await signed_in(client, "agent@example.com")
    inbox = await console.client.get("/inbox")
    assert "/automation" not in inbox.text.split("</nav>")[0]
    assert (await console.client.get("/automation")).status_code in (302, 303, 403)
