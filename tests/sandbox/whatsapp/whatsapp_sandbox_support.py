"""Constants and helpers shared by the WhatsApp simulator tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

PYWA = Path(__file__).parents[2] / "channels" / "whatsapp" / "payloads"
WABA = "300000000000001"
NUMBER = "400000000000001"
TOKEN = "EAAG-simulator-test"
APP_SECRET = "fedcba9876543210fedcba9876543210"
VERIFY_TOKEN = "sandbox-verify"
ANA: dict[str, Any] = {"name": "Ana Souza", "wa_id": "5511987654321", "bsuid": "BR.13491208655302741918"}
ZOE: dict[str, Any] = {
    "name": "Zoe",
    "wa_id": "447700900123",
    "bsuid": "GB.55512345678901234567",
    "username": "zoe",
    "hide_phone": True,
}
GRAPH = "/v25.0"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def pywa(name: str) -> Any:
    return json.loads((PYWA / name).read_text())


async def act(sim: httpx.AsyncClient, who: dict[str, Any], **action: Any) -> dict[str, Any]:
    response = await sim.post(
        f"/_sandbox/accounts/{WABA}/users/{who['wa_id']}/actions", json={"type": "text", **action}
    )
    response.raise_for_status()
    return response.json()  # type: ignore[no-any-return]


async def send_text(sim: httpx.AsyncClient, to: str, body: str, key: str | None = None) -> httpx.Response:
    payload: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "to": to,
        "type": "text",
        "text": {"body": body},
    }
    if key:
        payload["biz_opaque_callback_data"] = key
    return await sim.post(f"{GRAPH}/{NUMBER}/messages", json=payload, headers=AUTH)
