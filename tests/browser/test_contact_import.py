"""Contacts → Import in a real browser: upload, map the columns, watch it run, read the rejected rows."""

from __future__ import annotations

import pytest

from parley.bench.contact_import import generate_csv
from parley.models import AttributeDefinition, AttributeType
from tests.fixtures.browser import ARTIFACTS
from tests.fixtures.factories import DEFAULT_PASSWORD, create_user

pytestmark = pytest.mark.browser


async def test_upload_map_progress_and_rejected_rows(page, live_server, session, tmp_path) -> None:
    await create_user(session, email="ops@example.com", name="Olga Ops", role="administrator")
    session.add(
        AttributeDefinition(key="member_no", label="Member no", type=AttributeType.number, options=[])
    )
    await session.commit()
    content, broken = generate_csv(3000, 0.01)
    file = tmp_path / "customers.csv"
    file.write_bytes(content)
    base = live_server.url

    await page.goto(base + "/login")
    await page.fill("input[name=email]", "ops@example.com")
    await page.fill("input[name=password]", DEFAULT_PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(base + "/inbox")

    await page.goto(base + "/contacts/imports")
    assert await page.locator("p.empty-state").inner_text() == "Nothing has been imported yet."
    await page.set_input_files("input[name=file]", str(file))
    await page.click("button:has-text('Upload and map columns')")
    await page.wait_for_url(f"{base}/contacts/imports/*")

    # The columns were recognised from their names; the person fixes one and picks the key.
    assert "3000 rows" in await page.locator("main p").first.inner_text()
    assert await page.locator("select[data-column='Email']").input_value() == "email"
    assert await page.locator("select[data-column='Member no']").input_value() == "attr:member_no"
    assert await page.locator("select[data-column='Tags']").input_value() == "tags"
    await page.select_option("select[data-column='City']", "")
    await page.select_option("select#key", "email")
    await page.screenshot(path=str(ARTIFACTS / "contact-import-mapping.png"), full_page=True)
    await page.click("button:has-text('Start import')")

    # The page follows the import by itself and shows the outcome when it is done.
    await page.locator("#import-progress").wait_for()
    await page.locator("[data-status='done']").wait_for(timeout=120_000)
    bar = page.locator("#import-bar")
    assert await bar.get_attribute("value") == await bar.get_attribute("max") == "3000"
    assert await page.locator("#count-created").inner_text() == str(3000 - broken)
    assert await page.locator("#count-rejected").inner_text() == str(broken)
    rows = page.locator("#rejections tbody tr")
    assert await rows.count() == broken
    first = await rows.first.inner_text()
    assert first.split("\t")[:2] == ["52", "Email"] and "not-an-email" in first
    await page.screenshot(path=str(ARTIFACTS / "contact-import-done.png"), full_page=True)

    async with page.expect_download() as download_info:
        await page.click("#download-rejections")
    download = await download_info.value
    saved = tmp_path / "rejected.csv"
    await download.save_as(str(saved))
    lines = saved.read_text(encoding="utf-8-sig").splitlines()
    assert lines[0] == "row,column,value,reason" and len(lines) == broken + 1

    # The same file mapped the same way again: nothing changes, and the page says so.
    await page.goto(base + "/contacts/imports")
    await page.set_input_files("input[name=file]", str(file))
    await page.click("button:has-text('Upload and map columns')")
    await page.wait_for_url(f"{base}/contacts/imports/*")
    await page.select_option("select[data-column='City']", "")
    await page.select_option("select#key", "email")
    await page.click("button:has-text('Start import')")
    await page.locator("[data-status='done']").wait_for(timeout=120_000)
    assert await page.locator("#count-created").inner_text() == "0"
    assert await page.locator("#count-updated").inner_text() == "0"
    assert await page.locator("#count-unchanged").inner_text() == str(3000 - broken)

    # In Chinese.
    await page.goto(base + "/contacts/imports")
    async with page.expect_navigation():
        await page.select_option("#locale-switch", "zh_CN")
    assert await page.locator("h1").inner_text() == "导入"
    assert "已完成" in await page.locator("#imports").inner_text()
    await page.screenshot(path=str(ARTIFACTS / "contact-import-zh.png"), full_page=True)
