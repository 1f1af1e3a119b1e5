"""Contacts → WeChat followers in a real browser: start a sync and watch it finish."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.contacts_import.test_follower_sync import SimAccount, connect
from tests.fixtures.browser import ARTIFACTS, ServerProcess, free_port, server_env
from tests.fixtures.factories import DEFAULT_PASSWORD, create_user

pytestmark = pytest.mark.browser


@pytest.fixture
def sim_url(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    sim = ServerProcess(
        ["sandbox", "wechat", "--port", str(port)],
        server_env("sqlite+aiosqlite:///" + str(tmp_path / "unused.db"), tmp_path),
        tmp_path / "sim.log",
        port,
    ).start(ready_path="/_sandbox/stats")
    try:
        yield sim.url
    finally:
        sim.stop()


async def test_start_a_sync_and_see_followers_and_profiles_arrive(
    page, live_server, session, sim_url
) -> None:
    await create_user(session, email="ops@example.com", name="Olga Ops", role="administrator")
    sim = SimAccount(sim_url, 1200)
    await connect(session, sim)
    base = live_server.url

    await page.goto(base + "/login")
    await page.fill("input[name=email]", "ops@example.com")
    await page.fill("input[name=password]", DEFAULT_PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(base + "/inbox")
    await page.goto(base + "/contacts/sync")
    assert await page.locator("p.empty-state").inner_text() == "No follower sync has run yet."
    await page.click("button:has-text('Sync followers')")
    await page.wait_for_url(base + "/contacts/sync")
    # The page follows the sync while it runs and reloads when it is done.
    await page.locator("#syncs .status-done").wait_for(timeout=120_000)
    row = await page.locator("#syncs tbody tr").first.inner_text()
    assert "1200 / 1200" in row and "Done" in row
    await page.screenshot(path=str(ARTIFACTS / "follower-sync.png"), full_page=True)
    async with page.expect_navigation():
        await page.select_option("#locale-switch", "zh_CN")
    assert "已完成" in await page.locator("#syncs").inner_text()
