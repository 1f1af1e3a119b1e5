"""Connecting Parley channel accounts to running simulators (the demo, end-to-end tests, benchmarks)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class WeChatDemoAccount:
    name: str
    app_id: str
    app_secret: str
    token: str
    encoding_aes_key: str
    original_id: str
    encryption_mode: str = "safe"

    def credentials(self) -> dict[str, Any]:
        return {
            "app_id": self.app_id,
            "app_secret": self.app_secret,
            "token": self.token,
            "encoding_aes_key": self.encoding_aes_key,
            "encryption_mode": self.encryption_mode,
            "original_id": self.original_id,
        }


@dataclass(frozen=True)
class WhatsAppDemoAccount:
    name: str
    business_account_id: str
    phone_number_id: str
    display_phone_number: str
    access_token: str
    app_secret: str
    verify_token: str

    def credentials(self) -> dict[str, Any]:
        return {
            "phone_number_id": self.phone_number_id,
            "business_account_id": self.business_account_id,
            "access_token": self.access_token,
            "app_secret": self.app_secret,
            "verify_token": self.verify_token,
        }


async def register_wechat(
    client: httpx.AsyncClient, sim_url: str, account: WeChatDemoAccount, webhook_url: str
) -> None:
    """Tells the WeChat simulator about the account and where to push (re-registering updates it)."""
    response = await client.post(
        f"{sim_url}/_sandbox/accounts",
        json={**account.credentials(), "webhook_url": webhook_url, "name": account.name},
    )
    response.raise_for_status()


async def add_wechat_user(
    client: httpx.AsyncClient,
    sim_url: str,
    app_id: str,
    *,
    nickname: str,
    openid: str,
    unionid: str | None = None,
    subscribed: bool = True,
) -> None:
    response = await client.post(
        f"{sim_url}/_sandbox/accounts/{app_id}/users",
        json={"nickname": nickname, "openid": openid, "unionid": unionid, "subscribed": subscribed},
    )
    response.raise_for_status()


async def wechat_action(
    client: httpx.AsyncClient, sim_url: str, app_id: str, openid: str, **action: Any
) -> dict[str, Any]:
    response = await client.post(
        f"{sim_url}/_sandbox/accounts/{app_id}/users/{openid}/actions", json=action, timeout=30
    )
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


async def register_whatsapp(
    client: httpx.AsyncClient, sim_url: str, account: WhatsAppDemoAccount, webhook_url: str
) -> None:
    response = await client.post(
        f"{sim_url}/_sandbox/accounts",
        json={
            "business_account_id": account.business_account_id,
            "phone_numbers": [
                {
                    "phone_number_id": account.phone_number_id,
                    "display_phone_number": account.display_phone_number,
                    "verified_name": account.name,
                }
            ],
            "access_token": account.access_token,
            "app_secret": account.app_secret,
            "verify_token": account.verify_token,
            "webhook_url": webhook_url,
        },
    )
    response.raise_for_status()


async def add_whatsapp_user(
    client: httpx.AsyncClient, sim_url: str, waba: str, *, name: str, wa_id: str
) -> None:
    response = await client.post(
        f"{sim_url}/_sandbox/accounts/{waba}/users", json={"name": name, "wa_id": wa_id}
    )
    response.raise_for_status()


async def whatsapp_action(
    client: httpx.AsyncClient, sim_url: str, waba: str, wa_id: str, **action: Any
) -> dict[str, Any]:
    response = await client.post(
        f"{sim_url}/_sandbox/accounts/{waba}/users/{wa_id}/actions", json=action, timeout=30
    )
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


async def record(client: httpx.AsyncClient, sim_url: str, **filters: str) -> dict[str, Any] | list[Any]:
    response = await client.get(f"{sim_url}/_sandbox/record", params=filters)
    response.raise_for_status()
    result: dict[str, Any] | list[Any] = response.json()
    return result
