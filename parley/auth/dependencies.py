"""Authentication and authorization as FastAPI dependencies.

A request is authenticated by a bearer API token or by the console's session
cookie. Cookie-authenticated writes must also carry the session's CSRF token,
so that another site cannot make a signed-in agent's browser act.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from parley.auth import service as auth_service
from parley.auth.permissions import Permission
from parley.auth.service import Principal
from parley.db import begin_write, commit, rollback_callbacks, session_scope, writing_in_this_task
from parley.exceptions import Forbidden, Unauthorized

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"
CSRF_FORM_FIELD = "csrf_token"


async def get_db_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request: committed before the response is sent, rolled back on error."""
    async with request.app.state.sessionmaker() as session:
        if request.method not in SAFE_METHODS:
            await begin_write(session)
        try:
            yield session
        except BaseException:
            rollback_callbacks(session)
            await session.rollback()
            raise
        await commit(session)


DBSession = Annotated[AsyncSession, Depends(get_db_session, scope="function")]


def client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


_BACKGROUND: set[asyncio.Task[None]] = set()


def _spawn(work: Coroutine[Any, Any, None]) -> None:
    task = asyncio.create_task(work)
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)


async def _touch_token(maker: async_sessionmaker[AsyncSession], token_id: uuid.UUID) -> None:
    async with session_scope(maker) as session:
        await auth_service.api_token.touch(session, token_id)


async def _resolve(request: Request) -> Principal | None:
    """Who is calling, from a bearer token or the console cookie; cached on the request.

    Uses its own short read transaction, not the request's session: an endpoint
    that only reads and then calls a platform must not hold SQLite's write lock
    because of the sign-in check.
    """
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    principal: Principal | None = None
    touch_token = None
    maker = request.app.state.sessionmaker
    async with session_scope(maker, write=False) as session:
        authorization = request.headers.get("authorization", "")
        if authorization.lower().startswith("bearer "):
            token_row = await auth_service.api_token.resolve(session, authorization[7:].strip())
            if token_row is None:
                raise Unauthorized("Invalid or expired API token")
            permissions = await auth_service.user.permissions_of(session, token_row.user)
            principal = Principal(
                user=token_row.user, permissions=permissions, token=token_row, ip=client_ip(request)
            )
            if auth_service.api_token.needs_touch(token_row):
                touch_token = token_row.id
        else:
            cookie = request.cookies.get(request.app.state.settings.session_cookie_name)
            if cookie:
                session_row = await auth_service.user_session.resolve(session, cookie)
                if session_row is not None:
                    permissions = await auth_service.user.permissions_of(session, session_row.user)
                    principal = Principal(
                        user=session_row.user,
                        permissions=permissions,
                        session=session_row,
                        ip=client_ip(request),
                    )
        # Detached, so that the principal stays readable after this session ends
        # (and after a rollback of the request's own session).
        session.expunge_all()
    if touch_token is not None:
        if writing_in_this_task(maker):
            # The endpoint's own write transaction opened first (its session is listed before the
            # permission check); "last used" is bookkeeping, so it is written beside, not inside.
            _spawn(_touch_token(maker, touch_token))
        else:
            await _touch_token(maker, touch_token)
    request.state.principal = principal
    return principal


async def _check_csrf(request: Request, principal: Principal) -> None:
    if principal.session is None or request.method in SAFE_METHODS:
        return
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get(CSRF_FORM_FIELD)
        sent = value if isinstance(value, str) else None
    if not sent or sent != principal.session.csrf_token:
        raise Forbidden("Missing or wrong CSRF token; reload the page and try again")


async def optional_principal(request: Request) -> Principal | None:
    return await _resolve(request)


def authorize(*permissions: Permission) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """A dependency that requires a signed-in user holding every one of ``permissions``."""

    async def dependency(request: Request) -> Principal:
        principal = await _resolve(request)
        if principal is None:
            raise Unauthorized()
        await _check_csrf(request, principal)
        missing = [p.value for p in permissions if not principal.can(p.value)]
        if missing:
            raise Forbidden(f"Missing permission: {', '.join(missing)}")
        return principal

    dependency.__name__ = (
        "authorize_" + "_".join(p.name for p in permissions) if permissions else "authenticated"
    )
    return dependency


Authenticated = Annotated[Principal, Depends(authorize())]
UsersRead = Annotated[Principal, Depends(authorize(Permission.users_read))]
UsersWrite = Annotated[Principal, Depends(authorize(Permission.users_write))]
RolesRead = Annotated[Principal, Depends(authorize(Permission.roles_read))]
RolesWrite = Annotated[Principal, Depends(authorize(Permission.roles_write))]
TeamsRead = Annotated[Principal, Depends(authorize(Permission.teams_read))]
TeamsWrite = Annotated[Principal, Depends(authorize(Permission.teams_write))]
AuditRead = Annotated[Principal, Depends(authorize(Permission.audit_read))]
