"""Acceptance: two WeChat accounts report the same UnionID for different OpenIDs → one contact, one timeline.

Everything goes through real processes: the simulator pushes signed webhooks to
a running Parley, whose profile-sync worker asks the simulator's user-info API
and learns the shared UnionID.
"""

from __future__ import annotations

from parley.sandbox import wiring
from tests.fixtures.browser import wait_until


async def test_same_unionid_on_two_accounts_is_one_contact_with_one_timeline(stack):
    chongqing, chongqing_id = await stack.connect_wechat(mode="safe")
    chengdu, chengdu_id = await stack.connect_wechat(mode="plain")
    for account, openid in ((chongqing, "oCQ-openid-1"), (chengdu, "oCD-openid-2")):
        await wiring.add_wechat_user(
            stack.http,
            stack.sims.wechat,
            account.app_id,
            nickname="刘洋",
            openid=openid,
            unionid="oUNION-liuyang",
            subscribed=False,
        )
    await wiring.wechat_action(stack.http, stack.sims.wechat, chongqing.app_id, "oCQ-openid-1", type="follow")
    await wiring.wechat_action(
        stack.http, stack.sims.wechat, chongqing.app_id, "oCQ-openid-1", type="text", content="重庆号你好"
    )
    await wiring.wechat_action(stack.http, stack.sims.wechat, chengdu.app_id, "oCD-openid-2", type="follow")
    await wiring.wechat_action(
        stack.http, stack.sims.wechat, chengdu.app_id, "oCD-openid-2", type="text", content="成都号你好"
    )

    async def contacts() -> list[dict]:
        response = await stack.http.get(f"{stack.parley}/api/v1/contacts", headers=stack.admin)
        return response.json()["items"]

    async def merged() -> bool:
        return len(await contacts()) == 1

    await wait_until(merged, timeout_s=30, interval_s=0.3)
    [contact] = await contacts()
    detail = (
        await stack.http.get(f"{stack.parley}/api/v1/contacts/{contact['id']}", headers=stack.admin)
    ).json()
    identities = {(i["kind"], i["value"], i["account_id"]) for i in detail["identities"]}
    assert ("wechat_openid", "oCQ-openid-1", chongqing_id) in identities
    assert ("wechat_openid", "oCD-openid-2", chengdu_id) in identities
    assert ("wechat_unionid", "oUNION-liuyang", None) in identities

    timeline = (
        await stack.http.get(f"{stack.parley}/api/v1/contacts/{contact['id']}/timeline", headers=stack.admin)
    ).json()
    messages = {(item["account"], item["text"]) for item in timeline if item["kind"] == "message"}
    assert messages == {(chongqing.name, "重庆号你好"), (chengdu.name, "成都号你好")}
    follows = {item["account"] for item in timeline if item["kind"] == "subscribe"}
    assert follows == {chongqing.name, chengdu.name}
