"""Console pages: sign-in, the navigation frame, and the people-and-permissions settings."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlparse

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import update

from parley.auth import service as auth_service
from parley.auth.dependencies import DBSession, client_ip, optional_principal
from parley.auth.permissions import ALL_PERMISSIONS, Permission
from parley.auth.schemas import (
    APITokenCreate,
    RoleCreate,
    RoleUpdate,
    TeamCreate,
    TeamUpdate,
    UserCreate,
    UserUpdate,
)
from parley.exceptions import ParleyError
from parley.kit.types import utcnow
from parley.models import User
from parley.web.auth import (
    PageAuditRead,
    PageConversations,
    PageMarketing,
    PageReports,
    PageRolesRead,
    PageRolesWrite,
    PageService,
    PageTeamsRead,
    PageTeamsWrite,
    PageUser,
    PageUsersRead,
    PageUsersWrite,
)
from parley.web.i18n import LOCALES
from parley.web.rendering import LANG_COOKIE, render, request_locale

router = APIRouter(include_in_schema=False)
LOGIN_CSRF_COOKIE = "parley_login_csrf"


def _safe_next(value: str | None) -> str:
    """Only same-site paths, so the sign-in page cannot be used as an open redirect."""
    if not value:
        return "/"
    parsed = urlparse(value)
    if parsed.scheme or parsed.netloc or not value.startswith("/") or value.startswith("//"):
        return "/"
    return value


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"])
        parts.append(f"{field}: {error['msg']}")
    return "; ".join(parts)


async def _attempt(
    work: Callable[[], Awaitable[object]],
    redisplay: Callable[[str, int], Awaitable[HTMLResponse]],
    success: str,
) -> Response:
    """Run a settings form's action; on a validation or business error, show the form again with why."""
    try:
        await work()
    except ValidationError as exc:
        return await redisplay(_validation_message(exc), 422)
    except ParleyError as exc:
        return await redisplay(exc.message, exc.status_code)
    return RedirectResponse(success, status_code=303)


@router.get("/")
async def home(principal: PageUser) -> RedirectResponse:
    target = "/inbox" if principal.can(Permission.conversations_read) else "/settings"
    return RedirectResponse(target, status_code=303)


@router.get("/login", response_class=HTMLResponse)
async def login_form(
    request: Request, session: DBSession, next: str | None = None, lang: str | None = None
) -> Response:
    principal = await optional_principal(request)
    if principal is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    csrf = secrets.token_urlsafe(24)
    if lang in LOCALES:
        request.cookies[LANG_COOKIE] = lang
    response = render(
        request, "login.html", None, next=_safe_next(next), login_csrf=csrf, error=None, email=""
    )
    response.set_cookie(LOGIN_CSRF_COOKIE, csrf, httponly=True, samesite="strict", max_age=3600)
    if lang in LOCALES:
        response.set_cookie(LANG_COOKIE, lang, samesite="lax", max_age=365 * 86400)
    return response


@router.post("/login", response_class=HTMLResponse)
async def login_submit(
    request: Request,
    session: DBSession,
    email: str = Form(""),
    password: str = Form(""),
    next: str = Form("/"),
    csrf_token: str = Form(""),
) -> Response:
    settings = request.app.state.settings
    t_error: str | None = None
    status_code = 200
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not secrets.compare_digest(expected, csrf_token):
        t_error, status_code = "login.error_csrf", 403
    else:
        try:
            user_row = await auth_service.login.authenticate(
                session,
                email=email,
                password=password,
                ip=client_ip(request),
                max_failures=settings.login_max_failures,
                window_s=settings.login_failure_window_s,
            )
        except ParleyError as exc:
            t_error = "login.error_throttled" if exc.status_code == 429 else "login.error_credentials"
            status_code = exc.status_code
        else:
            # Signing in to the console means being at work: new conversations may come.
            user_row.presence = "online"
            user_row.presence_changed_at = utcnow()
            token, _row = await auth_service.user_session.create(
                session,
                user_row=user_row,
                max_age_s=settings.session_max_age_s,
                ip=client_ip(request),
                user_agent=request.headers.get("user-agent", ""),
            )
            redirect = RedirectResponse(_safe_next(next), status_code=303)
            redirect.set_cookie(
                settings.session_cookie_name,
                token,
                max_age=settings.session_max_age_s,
                httponly=True,
                samesite="lax",
                secure=settings.cookie_secure,
            )
            redirect.delete_cookie(LOGIN_CSRF_COOKIE)
            return redirect
    csrf = secrets.token_urlsafe(24)
    response = render(
        request,
        "login.html",
        None,
        status_code=status_code,
        next=_safe_next(next),
        login_csrf=csrf,
        error=t_error,
        email=email,
    )
    response.set_cookie(LOGIN_CSRF_COOKIE, csrf, httponly=True, samesite="strict", max_age=3600)
    return response


@router.post("/logout")
async def logout(request: Request, session: DBSession, principal: PageUser) -> RedirectResponse:
    cookie_name = request.app.state.settings.session_cookie_name
    token = request.cookies.get(cookie_name)
    if token:
        await auth_service.user_session.end(session, token)
    await session.execute(
        update(User)
        .where(User.id == principal.user.id)
        .values(presence="offline", presence_changed_at=utcnow())
    )
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(cookie_name)
    return response


INBOX_PREFIXES = (
    "inbox.",
    "presence.",
    "status.",
    "tick.",
    "channel.",
    "contact.",
    "identity.",
    "type.",
    "stage.",
)


@router.get("/inbox", response_class=HTMLResponse)
async def inbox_page(request: Request, session: DBSession, principal: PageConversations) -> HTMLResponse:
    from parley.channels.service import channel_account
    from parley.models import User
    from parley.web.i18n import catalog

    locale = request_locale(request, principal)
    strings = {k: v for k, v in catalog(locale).items() if k.startswith(INBOX_PREFIXES)}
    accounts = await channel_account.list_accounts(session)
    # The page shows the agent's stored presence, which the principal snapshot may predate.
    current = await session.get(User, principal.user.id)
    if current is not None:
        principal.user.presence = current.presence
    return render(request, "inbox.html", principal, accounts=accounts, inbox_strings=strings)


@router.get("/marketing", response_class=HTMLResponse)
async def marketing_page(request: Request, principal: PageMarketing) -> HTMLResponse:
    return render(request, "section.html", principal, section="marketing")


@router.get("/service", response_class=HTMLResponse)
async def service_page(request: Request, principal: PageService) -> HTMLResponse:
    return render(request, "section.html", principal, section="service")


@router.get("/reports", response_class=HTMLResponse)
async def reports_page(request: Request, principal: PageReports) -> HTMLResponse:
    return render(request, "section.html", principal, section="reports")


# --- settings -------------------------------------------------------------------------------


@router.get("/settings", response_class=HTMLResponse)
async def settings_home(principal: PageUser) -> RedirectResponse:
    target = "/settings/users" if principal.can(Permission.users_read) else "/settings/profile"
    return RedirectResponse(target, status_code=303)


@router.get("/settings/profile", response_class=HTMLResponse)
async def profile_page(request: Request, session: DBSession, principal: PageUser) -> HTMLResponse:
    tokens = await auth_service.api_token.list_for(session, principal.user.id)
    return render(request, "settings/profile.html", principal, tokens=tokens, new_token=None, error=None)


@router.post("/settings/profile", response_class=HTMLResponse)
async def profile_submit(
    request: Request,
    session: DBSession,
    principal: PageUser,
    name: str = Form(...),
    locale: str = Form(...),
    timezone: str = Form(...),
) -> Response:
    try:
        data = UserUpdate(name=name, locale=locale, timezone=timezone)
        await auth_service.user.update(session, actor=principal, user_id=principal.user.id, data=data)
    except (ValidationError, ParleyError) as exc:
        tokens = await auth_service.api_token.list_for(session, principal.user.id)
        message = _validation_message(exc) if isinstance(exc, ValidationError) else exc.message
        return render(
            request,
            "settings/profile.html",
            principal,
            status_code=422,
            tokens=tokens,
            new_token=None,
            error=message,
        )
    return RedirectResponse("/settings/profile?saved=1", status_code=303)


@router.post("/settings/locale")
async def switch_locale(
    request: Request, session: DBSession, principal: PageUser, locale: str = Form(...), next: str = Form("/")
) -> RedirectResponse:
    if locale in LOCALES:
        await auth_service.user.update(
            session, actor=principal, user_id=principal.user.id, data=UserUpdate(locale=locale)
        )
    return RedirectResponse(_safe_next(next), status_code=303)


@router.post("/settings/profile/tokens", response_class=HTMLResponse)
async def create_token_page(
    request: Request, session: DBSession, principal: PageUser, name: str = Form(...)
) -> HTMLResponse:
    error = None
    secret = None
    try:
        secret, _row = await auth_service.api_token.create(
            session, actor=principal, data=APITokenCreate(name=name)
        )
    except ValidationError as exc:
        error = _validation_message(exc)
    tokens = await auth_service.api_token.list_for(session, principal.user.id)
    return render(
        request,
        "settings/profile.html",
        principal,
        status_code=422 if error else 200,
        tokens=tokens,
        new_token=secret,
        error=error,
    )


@router.post("/settings/profile/tokens/{token_id}/revoke")
async def revoke_token_page(session: DBSession, principal: PageUser, token_id: uuid.UUID) -> RedirectResponse:
    await auth_service.api_token.revoke(session, actor=principal, token_id=token_id)
    return RedirectResponse("/settings/profile", status_code=303)


@router.get("/settings/users", response_class=HTMLResponse)
async def users_page(
    request: Request, session: DBSession, principal: PageUsersRead, q: str | None = None
) -> HTMLResponse:
    users, total = await auth_service.user.search(session, query=q, limit=500)
    return render(request, "settings/users.html", principal, users=users, total=total, q=q or "")


async def _user_form(
    request: Request,
    session: DBSession,
    principal: Any,
    *,
    edit: Any = None,
    error: str | None = None,
    values: dict[str, Any] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    roles = await auth_service.role.list_roles(session)
    return render(
        request,
        "settings/user_form.html",
        principal,
        status_code=status_code,
        roles=roles,
        edit=edit,
        error=error,
        values=values or {},
        locales=LOCALES,
    )


@router.get("/settings/users/new", response_class=HTMLResponse)
async def new_user_page(request: Request, session: DBSession, principal: PageUsersWrite) -> HTMLResponse:
    return await _user_form(
        request,
        session,
        principal,
        values={
            "role": "agent",
            "locale": request_locale(request, principal),
            "timezone": principal.user.timezone,
        },
    )


@router.post("/settings/users/new", response_class=HTMLResponse)
async def create_user_page(
    request: Request,
    session: DBSession,
    principal: PageUsersWrite,
    email: str = Form(""),
    name: str = Form(""),
    password: str = Form(""),
    role: str = Form(""),
    locale: str = Form("en"),
    timezone: str = Form("UTC"),
) -> Response:
    values = {"email": email, "name": name, "role": role, "locale": locale, "timezone": timezone}

    async def create() -> None:
        data = UserCreate(
            email=email, name=name, password=password, role=role, locale=locale, timezone=timezone
        )
        await auth_service.user.create(session, actor=principal, data=data)

    async def redisplay(error: str, status_code: int) -> HTMLResponse:
        return await _user_form(
            request, session, principal, error=error, values=values, status_code=status_code
        )

    return await _attempt(create, redisplay, "/settings/users?created=1")


@router.get("/settings/users/{user_id}", response_class=HTMLResponse)
async def edit_user_page(
    request: Request, session: DBSession, principal: PageUsersRead, user_id: uuid.UUID
) -> HTMLResponse:
    edit = await auth_service.user.get(session, user_id)
    values = {
        "email": edit.email,
        "name": edit.name,
        "role": edit.role.name,
        "locale": edit.locale,
        "timezone": edit.timezone,
        "is_active": edit.is_active,
    }
    return await _user_form(request, session, principal, edit=edit, values=values)


@router.post("/settings/users/{user_id}", response_class=HTMLResponse)
async def update_user_page(
    request: Request,
    session: DBSession,
    principal: PageUsersWrite,
    user_id: uuid.UUID,
    name: str = Form(""),
    password: str = Form(""),
    role: str = Form(""),
    locale: str = Form("en"),
    timezone: str = Form("UTC"),
    is_active: str | None = Form(None),
) -> Response:
    edit = await auth_service.user.get(session, user_id)
    values = {
        "email": edit.email,
        "name": name,
        "role": role,
        "locale": locale,
        "timezone": timezone,
        "is_active": bool(is_active),
    }

    async def save() -> None:
        data = UserUpdate(
            name=name,
            password=password or None,
            role=role,
            locale=locale,
            timezone=timezone,
            is_active=bool(is_active),
        )
        await auth_service.user.update(session, actor=principal, user_id=user_id, data=data)

    async def redisplay(error: str, status_code: int) -> HTMLResponse:
        return await _user_form(
            request, session, principal, edit=edit, error=error, values=values, status_code=status_code
        )

    return await _attempt(save, redisplay, "/settings/users?saved=1")


@router.get("/settings/roles", response_class=HTMLResponse)
async def roles_page(request: Request, session: DBSession, principal: PageRolesRead) -> HTMLResponse:
    roles = await auth_service.role.list_roles(session)
    return render(request, "settings/roles.html", principal, roles=roles)


async def _role_form(
    request: Request,
    principal: Any,
    *,
    edit: Any = None,
    error: str | None = None,
    values: dict[str, Any] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "settings/role_form.html",
        principal,
        status_code=status_code,
        edit=edit,
        error=error,
        values=values or {"permissions": []},
        all_permissions=sorted(ALL_PERMISSIONS),
    )


@router.get("/settings/roles/new", response_class=HTMLResponse)
async def new_role_page(request: Request, principal: PageRolesWrite) -> HTMLResponse:
    return await _role_form(request, principal)


@router.post("/settings/roles/new", response_class=HTMLResponse)
async def create_role_page(request: Request, session: DBSession, principal: PageRolesWrite) -> Response:
    form = await request.form()
    permissions = [str(v) for v in form.getlist("permissions")]
    values = {
        "name": str(form.get("name", "")),
        "description": str(form.get("description", "")),
        "permissions": permissions,
    }

    async def create() -> None:
        data = RoleCreate(name=values["name"], description=values["description"], permissions=permissions)
        await auth_service.role.create(session, actor=principal, data=data)

    async def redisplay(error: str, status_code: int) -> HTMLResponse:
        return await _role_form(request, principal, error=error, values=values, status_code=status_code)

    return await _attempt(create, redisplay, "/settings/roles")


@router.get("/settings/roles/{role_id}", response_class=HTMLResponse)
async def edit_role_page(
    request: Request, session: DBSession, principal: PageRolesRead, role_id: uuid.UUID
) -> HTMLResponse:
    edit = await auth_service.role.get(session, role_id)
    values = {"name": edit.name, "description": edit.description, "permissions": edit.permissions}
    return await _role_form(request, principal, edit=edit, values=values)


@router.post("/settings/roles/{role_id}", response_class=HTMLResponse)
async def update_role_page(
    request: Request, session: DBSession, principal: PageRolesWrite, role_id: uuid.UUID
) -> Response:
    edit = await auth_service.role.get(session, role_id)
    form = await request.form()
    if form.get("action") == "delete":
        try:
            await auth_service.role.delete(session, actor=principal, role_id=role_id)
        except ParleyError as exc:
            values = {"name": edit.name, "description": edit.description, "permissions": edit.permissions}
            return await _role_form(
                request, principal, edit=edit, error=exc.message, values=values, status_code=exc.status_code
            )
        return RedirectResponse("/settings/roles", status_code=303)
    permissions = [str(v) for v in form.getlist("permissions")]
    values = {"name": edit.name, "description": str(form.get("description", "")), "permissions": permissions}
    try:
        data = RoleUpdate(
            description=values["description"], permissions=None if edit.is_builtin else permissions
        )
        await auth_service.role.update(session, actor=principal, role_id=role_id, data=data)
    except ParleyError as exc:
        return await _role_form(
            request, principal, edit=edit, error=exc.message, values=values, status_code=exc.status_code
        )
    return RedirectResponse("/settings/roles", status_code=303)


@router.get("/settings/teams", response_class=HTMLResponse)
async def teams_page(request: Request, session: DBSession, principal: PageTeamsRead) -> HTMLResponse:
    teams = await auth_service.team.list_teams(session)
    return render(request, "settings/teams.html", principal, teams=teams)


async def _team_form(
    request: Request,
    session: DBSession,
    principal: Any,
    *,
    edit: Any = None,
    error: str | None = None,
    values: dict[str, Any] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    users, _total = await auth_service.user.search(session, limit=1000)
    return render(
        request,
        "settings/team_form.html",
        principal,
        status_code=status_code,
        edit=edit,
        error=error,
        values=values or {"member_ids": []},
        users=users,
    )


@router.get("/settings/teams/new", response_class=HTMLResponse)
async def new_team_page(request: Request, session: DBSession, principal: PageTeamsWrite) -> HTMLResponse:
    return await _team_form(request, session, principal)


def _uuid_list(values: list[Any]) -> list[uuid.UUID]:
    result = []
    for value in values:
        try:
            result.append(uuid.UUID(str(value)))
        except ValueError:
            continue
    return result


@router.post("/settings/teams/new", response_class=HTMLResponse)
async def create_team_page(request: Request, session: DBSession, principal: PageTeamsWrite) -> Response:
    form = await request.form()
    member_ids = _uuid_list(form.getlist("member_ids"))
    values = {
        "name": str(form.get("name", "")),
        "description": str(form.get("description", "")),
        "member_ids": member_ids,
    }

    async def create() -> None:
        data = TeamCreate(name=values["name"], description=values["description"], member_ids=member_ids)
        await auth_service.team.create(session, actor=principal, data=data)

    async def redisplay(error: str, status_code: int) -> HTMLResponse:
        return await _team_form(
            request, session, principal, error=error, values=values, status_code=status_code
        )

    return await _attempt(create, redisplay, "/settings/teams")


@router.get("/settings/teams/{team_id}", response_class=HTMLResponse)
async def edit_team_page(
    request: Request, session: DBSession, principal: PageTeamsRead, team_id: uuid.UUID
) -> HTMLResponse:
    edit = await auth_service.team.get(session, team_id)
    values = {"name": edit.name, "description": edit.description, "member_ids": [m.id for m in edit.members]}
    return await _team_form(request, session, principal, edit=edit, values=values)


@router.post("/settings/teams/{team_id}", response_class=HTMLResponse)
async def update_team_page(
    request: Request, session: DBSession, principal: PageTeamsWrite, team_id: uuid.UUID
) -> Response:
    edit = await auth_service.team.get(session, team_id)
    form = await request.form()
    if form.get("action") == "delete":
        await auth_service.team.delete(session, actor=principal, team_id=team_id)
        return RedirectResponse("/settings/teams", status_code=303)
    member_ids = _uuid_list(form.getlist("member_ids"))
    values = {
        "name": str(form.get("name", "")),
        "description": str(form.get("description", "")),
        "member_ids": member_ids,
    }

    async def save() -> None:
        data = TeamUpdate(name=values["name"], description=values["description"], member_ids=member_ids)
        await auth_service.team.update(session, actor=principal, team_id=team_id, data=data)

    async def redisplay(error: str, status_code: int) -> HTMLResponse:
        return await _team_form(
            request, session, principal, edit=edit, error=error, values=values, status_code=status_code
        )

    return await _attempt(save, redisplay, "/settings/teams")


@router.get("/settings/audit", response_class=HTMLResponse)
async def audit_page(
    request: Request, session: DBSession, principal: PageAuditRead, offset: int = 0
) -> HTMLResponse:
    entries, total = await auth_service.audit.search(session, limit=100, offset=max(offset, 0))
    return render(request, "settings/audit.html", principal, entries=entries, total=total, offset=offset)
