"""The approved templates of an account, for the composer's template picker."""

from __future__ import annotations

import re
from typing import Any

from parley.channels.base import ChannelAdapter

_PLACEHOLDER = re.compile(r"\{\{\s*([\w.]+)\s*\}\}")


def _whatsapp(raw: dict[str, Any]) -> dict[str, Any] | None:
    if str(raw.get("status", "")).upper() != "APPROVED":
        return None
    body: dict[str, Any] = next(
        (c for c in raw.get("components", []) if str(c.get("type", "")).upper() == "BODY"), {}
    )
    text = str(body.get("text", ""))
    return {
        "kind": "whatsapp",
        "name": raw.get("name", ""),
        "language": raw.get("language"),
        "category": raw.get("category"),
        "preview": text,
        "parameters": [f"{{{{{p}}}}}" for p in _PLACEHOLDER.findall(text)],
    }


def _wechat(raw: dict[str, Any]) -> dict[str, Any]:
    content = str(raw.get("content", ""))
    # WeChat placeholders look like {{first.DATA}}; the data key is the part before ".DATA".
    keys = [p.removesuffix(".DATA") for p in _PLACEHOLDER.findall(content)]
    return {
        "kind": "wechat",
        "name": raw.get("template_id", ""),
        "language": None,
        "category": raw.get("title"),
        "preview": content,
        "parameters": keys,
    }


async def approved_templates(channel_type: str, adapter: ChannelAdapter) -> list[dict[str, Any]]:
    fetch = getattr(adapter, "templates", None)
    if fetch is None:
        return []
    raw: list[dict[str, Any]] = await fetch()
    if channel_type == "whatsapp":
        return [t for t in (_whatsapp(r) for r in raw) if t is not None]
    return [_wechat(r) for r in raw]
