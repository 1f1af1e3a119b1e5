"""English and Simplified Chinese for the console.

Catalogs are JSON files keyed by message id, so adding a string needs no
compile step; a test keeps the two catalogs in step.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

from babel import Locale, UnknownLocaleError
from babel.dates import format_datetime

LOCALES = {"en": "English", "zh_CN": "简体中文"}
DEFAULT_LOCALE = "en"
_DIR = Path(__file__).parent / "locales"


@cache
def catalog(locale: str) -> dict[str, str]:
    """The locale's messages: ``<locale>.json`` plus every domain file ``<domain>.<locale>.json``."""
    data: dict[str, str] = json.loads((_DIR / f"{locale}.json").read_text(encoding="utf-8"))
    for extra in sorted(_DIR.glob(f"*.{locale}.json")):
        data.update(json.loads(extra.read_text(encoding="utf-8")))
    return data


class Translator:
    def __init__(self, locale: str) -> None:
        self.locale = locale if locale in LOCALES else DEFAULT_LOCALE
        self._messages = catalog(self.locale)
        self._fallback = catalog(DEFAULT_LOCALE)

    def __call__(self, key: str, **params: object) -> str:
        text = self._messages.get(key) or self._fallback.get(key) or key
        return text.format(**params) if params else text

    def datetime(self, value: datetime | None, tz: str = "UTC", fmt: str = "medium") -> str:
        if value is None:
            return ""
        try:
            zone = ZoneInfo(tz)
        except (KeyError, ValueError):
            zone = ZoneInfo("UTC")
        return format_datetime(value, format=fmt, tzinfo=zone, locale=self.locale)


def _supported(tag: str) -> str | None:
    try:
        parsed = Locale.parse(tag.strip().replace("-", "_"))
    except (ValueError, UnknownLocaleError):
        return None
    if parsed.language == "zh":
        # Traditional-script readers are better served by English than by Simplified characters.
        if parsed.script == "Hant" or parsed.territory in {"TW", "HK", "MO"}:
            return None
        return "zh_CN"
    if parsed.language == "en":
        return "en"
    return None


def negotiate(accept_language: str | None) -> str:
    """Picks the best supported locale from an Accept-Language header."""
    if not accept_language:
        return DEFAULT_LOCALE
    weighted: list[tuple[float, int, str]] = []
    for index, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        if tag and tag != "*" and quality > 0:
            weighted.append((-quality, index, tag))
    for _q, _i, tag in sorted(weighted):
        found = _supported(tag)
        if found:
            return found
    return DEFAULT_LOCALE
