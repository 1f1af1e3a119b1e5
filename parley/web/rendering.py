"""Rendering console pages: templates, locale, time zone, CSRF token."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from parley import __version__
from parley.auth.service import Principal
from parley.web.i18n import LOCALES, Translator, negotiate

LANG_COOKIE = "parley_lang"
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))

# Navigation: (key, path, permission needed to see it).
NAV = [
    ("nav.inbox", "/inbox", "conversations.read"),
    ("nav.contacts", "/contacts", "contacts.read"),
    ("nav.marketing", "/marketing", "marketing.read"),
    ("nav.service", "/service", "service.read"),
    ("nav.automation", "/automation", "automation.read"),
    ("nav.reports", "/reports", "reports.read"),
    ("nav.operations", "/operations", "operations.read"),
    ("nav.routing", "/routing", "operations.read"),
    ("nav.settings", "/settings", None),
]


def request_locale(request: Request, principal: Principal | None) -> str:
    if principal is not None:
        return principal.user.locale
    cookie = request.cookies.get(LANG_COOKIE)
    if cookie in LOCALES:
        return cookie
    return negotiate(request.headers.get("accept-language"))


def render(
    request: Request,
    template: str,
    principal: Principal | None,
    *,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    locale = request_locale(request, principal)
    t = Translator(locale)
    tz = principal.user.timezone if principal else "UTC"
    nav = [
        (t(key), path)
        for key, path, permission in NAV
        if principal is not None and (permission is None or principal.can(permission))
    ]
    return templates.TemplateResponse(
        request,
        template,
        {
            "t": t,
            "locale": locale,
            "html_lang": "zh-CN" if locale == "zh_CN" else "en",
            "locales": LOCALES,
            "principal": principal,
            "user": principal.user if principal else None,
            "csrf_token": principal.session.csrf_token if principal and principal.session else "",
            "nav": nav,
            "path": request.url.path,
            "fmt_dt": lambda value, fmt="medium": t.datetime(value, tz, fmt),
            "version": __version__,
            **context,
        },
        status_code=status_code,
    )
