"""Constants and helpers shared by the WhatsApp adapter tests."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

PAYLOADS = Path(__file__).parent / "payloads"
WABA = "102290129340398"
NUMBER = "106540352242922"
SECOND_NUMBER = "106540352242923"
TOKEN = "EAAG-sandbox-token"
APP_SECRET = "0123456789abcdef0123456789abcdef"
VERIFY_TOKEN = "parley-verify"
ANA: dict[str, Any] = {"name": "Ana Souza", "wa_id": "5511987654321", "bsuid": "BR.13491208655302741918"}
BO: dict[str, Any] = {
    "name": "Bo",
    "wa_id": "4915112345678",
    "bsuid": "DE.99887766554433221100",
    "username": "bo",
    "hide_phone": True,
}
LEGACY: dict[str, Any] = {"name": "Lee", "wa_id": "16505551234"}


class NoTokens:
    async def get(self, account_id: str, kind: str) -> tuple[str, datetime] | None:
        return None

    async def put(self, account_id: str, kind: str, value: str, expires_at: datetime) -> None:
        return None


def load(name: str) -> Any:
    return json.loads((PAYLOADS / name).read_text())
