"""Issue 8 end to end: a live Parley process, the WeChat simulator, and the business's own HTTP service."""

from __future__ import annotations

import json

import pytest

from parley.sandbox import wiring
from tests.automation.support import create_queue, serve_vin_service, vin_flow
from tests.fixtures.browser import wait_until

VIN = "LSVAU2180N2183294"


@pytest.fixture
async def vin_service():
    service, stop = await serve_vin_service()
    try:
        yield service
    finally:
        await stop()


async def _api(stack, method: str, path: str, **kwargs):
    response = await stack.http.request(
        method, f"{stack.parley}/api/v1/automation{path}", headers=stack.admin, **kwargs
    )
    assert response.status_code < 300, response.text
    return response.json()


async def _sent_to_user(stack, app_id: str, openid: str, needle: str) -> bool:
    record = await wiring.record(stack.http, stack.sims.wechat, app_id=app_id, openid=openid)
    entries = record["entries"] if isinstance(record, dict) else record
    return any(needle in json.dumps(e.get("content"), ensure_ascii=False) for e in entries)


async def test_vin_flow_survives_a_server_kill_while_it_waits(stack, live_server, vin_service):
    account, account_id = await stack.connect_wechat(mode="safe")
    await wiring.add_wechat_user(
        stack.http, stack.sims.wechat, account.app_id, nickname="李雷", openid="oVin"
    )
    queue_id = await create_queue(stack.http, stack.admin, base=stack.parley)
    flow = await _api(
        stack,
        "POST",
        "/flows",
        json={"name": "VIN", "definition": vin_flow(vin_service.url, queue_id=queue_id)},
    )
    await _api(
        stack,
        "POST",
        "/rules",
        json={
            "account_id": account_id,
            "name": "VIN",
            "keywords": [{"text": "车架号查询", "match": "exact"}],
            "flow_id": flow["id"],
        },
    )

    asked = await wiring.wechat_action(
        stack.http, stack.sims.wechat, account.app_id, "oVin", type="text", content="车架号查询"
    )
    # The flow's question is the passive reply, accepted by the simulator in safe mode.
    assert asked["delivered"] and asked["reply"]["content"] == "请发送您的17位车架号（VIN）", asked

    live_server.kill()  # SIGKILL while the run waits for the customer
    live_server.start()

    answered = await wiring.wechat_action(
        stack.http, stack.sims.wechat, account.app_id, "oVin", type="text", content=VIN
    )
    assert answered["delivered"]

    async def handed_off() -> bool:
        runs = await _api(stack, "GET", f"/flows/{flow['id']}/runs")
        return bool(runs) and runs[0]["status"] == "handed_off"

    await wait_until(handed_off, timeout_s=30)
    assert vin_service.calls == [{"vin": VIN}]
    [run] = await _api(stack, "GET", f"/flows/{flow['id']}/runs")
    steps = (await _api(stack, "GET", f"/runs/{run['id']}"))["steps"]
    assert [s["node_id"] for s in steps] == [
        "ask_vin",
        "ask_vin",
        "lookup",
        "check",
        "tag",
        "found",
        "handoff",
    ]
    await wait_until(lambda: _sent_to_user(stack, account.app_id, "oVin", "您的Model Y已找到"), timeout_s=30)
    board = await stack.http.get(f"{stack.parley}/api/v1/routing/wallboard", headers=stack.admin)
    [queue] = [q for q in board.json()["queues"] if q["id"] == queue_id]
    assert queue["waiting"] == 1, queue


async def test_published_menu_reaches_the_phone_and_a_click_starts_the_flow(stack, vin_service):
    account, account_id = await stack.connect_wechat(mode="safe")
    await wiring.add_wechat_user(
        stack.http, stack.sims.wechat, account.app_id, nickname="韩梅梅", openid="oMenu"
    )
    flow = await _api(stack, "POST", "/flows", json={"name": "VIN", "definition": vin_flow(vin_service.url)})
    menu = {
        "buttons": [
            {
                "name": "车辆服务",
                "sub_button": [
                    {
                        "name": "车架号查询",
                        "type": "click",
                        "key": "VIN_QUERY",
                        "action": {"flow_id": flow["id"]},
                    },
                    {"name": "官网", "type": "view", "url": "https://example.com/"},
                ],
            },
            {
                "name": "营业时间",
                "type": "click",
                "key": "HOURS",
                "action": {"reply": {"type": "text", "text": "每天9:00-18:00"}},
            },
        ]
    }
    await _api(stack, "PUT", f"/menus/{account_id}", json=menu)
    published = await _api(stack, "POST", f"/menus/{account_id}/publish")
    assert published["published_at"] is not None

    on_platform = (
        await stack.http.get(f"{stack.sims.wechat}/_sandbox/accounts/{account.app_id}/menu")
    ).json()["menu"]
    assert [b["name"] for b in on_platform["button"]] == ["车辆服务", "营业时间"]
    assert on_platform["button"][0]["sub_button"][0]["key"] == "VIN_QUERY"
    assert "action" not in json.dumps(on_platform)  # Parley's own actions stay in Parley
    phone = (
        await stack.http.get(
            f"{stack.sims.wechat}/_sandbox/accounts/{account.app_id}/users/oMenu/conversation"
        )
    ).json()
    assert phone["menu"]["button"][1]["name"] == "营业时间"

    clicked = await wiring.wechat_action(
        stack.http, stack.sims.wechat, account.app_id, "oMenu", type="click", key="VIN_QUERY"
    )
    assert clicked["delivered"] and clicked["reply"]["content"] == "请发送您的17位车架号（VIN）", clicked
    hours = await wiring.wechat_action(
        stack.http, stack.sims.wechat, account.app_id, "oMenu", type="click", key="HOURS"
    )
    assert hours["reply"]["content"] == "每天9:00-18:00"
    [run] = await _api(stack, "GET", f"/flows/{flow['id']}/runs")
    assert (run["status"], run["node_id"]) == ("waiting_reply", "ask_vin")


async def test_invalid_menu_is_refused_before_reaching_the_platform(stack):
    _account, account_id = await stack.connect_wechat(mode="plain")
    response = await stack.http.put(
        f"{stack.parley}/api/v1/automation/menus/{account_id}",
        json={"buttons": [{"name": "这是一个非常非常长的菜单名称", "type": "click", "key": "K"}]},
        headers=stack.admin,
    )
    assert response.status_code == 422
    assert "bytes" in response.text
