from __future__ import annotations

import re
from pathlib import Path

import pytest

from parley.web.i18n import LOCALES, catalog, negotiate

TEMPLATES = Path(__file__).resolve().parents[2] / "parley" / "web" / "templates"


def test_catalogs_have_the_same_keys():
    english = set(catalog("en"))
    for locale in LOCALES:
        assert set(catalog(locale)) == english, f"{locale} differs from en"


def test_every_literal_key_used_by_templates_exists():
    used = set()
    for template in TEMPLATES.rglob("*.html"):
        used |= set(re.findall(r"\bt\('([a-z_.0-9]+)'\)", template.read_text()))
    missing = used - set(catalog("en"))
    assert not missing


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, "en"),
        ("zh-CN", "zh_CN"),
        ("zh-Hans-CN,zh;q=0.8", "zh_CN"),
        ("fr-FR,zh;q=0.5", "zh_CN"),
        ("en-GB,zh-CN;q=0.5", "en"),
        ("zh-CN;q=0.2,en;q=0.9", "en"),
        ("de", "en"),
        ("garbage;;q=x", "en"),
    ],
)
def test_negotiate(header, expected):
    assert negotiate(header) == expected
