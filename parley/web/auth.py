"""Page-level authentication: redirect to sign-in instead of answering 401."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request

from parley.auth.dependencies import authorize
from parley.auth.permissions import Permission
from parley.auth.service import Principal
from parley.exceptions import ParleyError, Unauthorized


class LoginRequired(ParleyError):
    status_code = 303

    def __init__(self, next_path: str) -> None:
        super().__init__("Sign in to continue")
        self.next_path = next_path


def page(*permissions: Permission) -> Callable[..., Coroutine[Any, Any, Principal]]:
    inner = authorize(*permissions)

    async def dependency(request: Request) -> Principal:
        try:
            return await inner(request)
        except Unauthorized as exc:
            raise LoginRequired(request.url.path) from exc

    return dependency


PageUser = Annotated[Principal, Depends(page())]
PageUsersRead = Annotated[Principal, Depends(page(Permission.users_read))]
PageUsersWrite = Annotated[Principal, Depends(page(Permission.users_write))]
PageRolesRead = Annotated[Principal, Depends(page(Permission.roles_read))]
PageRolesWrite = Annotated[Principal, Depends(page(Permission.roles_write))]
PageTeamsRead = Annotated[Principal, Depends(page(Permission.teams_read))]
PageTeamsWrite = Annotated[Principal, Depends(page(Permission.teams_write))]
PageAuditRead = Annotated[Principal, Depends(page(Permission.audit_read))]
PageConversations = Annotated[Principal, Depends(page(Permission.conversations_read))]
PageContacts = Annotated[Principal, Depends(page(Permission.contacts_read))]
PageMarketing = Annotated[Principal, Depends(page(Permission.marketing_read))]
PageService = Annotated[Principal, Depends(page(Permission.service_read))]
PageReports = Annotated[Principal, Depends(page(Permission.reports_read))]
