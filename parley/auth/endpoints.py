"""REST API for people and permissions (``/api/v1``)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Query, status

from parley.auth import service as auth_service
from parley.auth.dependencies import (
    AuditRead,
    Authenticated,
    DBSession,
    RolesRead,
    RolesWrite,
    TeamsRead,
    TeamsWrite,
    UsersRead,
    UsersWrite,
)
from parley.auth.permissions import ALL_PERMISSIONS
from parley.auth.schemas import (
    APITokenCreate,
    APITokenCreated,
    APITokenRead,
    AuditLogRead,
    RoleCreate,
    RoleRead,
    RoleUpdate,
    TeamCreate,
    TeamRead,
    TeamUpdate,
    UserCreate,
    UserRead,
    UserUpdate,
)
from parley.kit.schemas import Page
from parley.models import Team

ERRORS = {
    401: {"description": "Not signed in, or the token is invalid"},
    403: {"description": "Signed in without the needed permission"},
}

router = APIRouter(prefix="/api/v1", responses=ERRORS)  # type: ignore[arg-type]


def _team_read(team: Team) -> TeamRead:
    return TeamRead(
        id=team.id, name=team.name, description=team.description, member_ids=[m.id for m in team.members]
    )


@router.get("/me", response_model=UserRead, tags=["me"])
async def read_me(principal: Authenticated, session: DBSession) -> UserRead:
    return UserRead.model_validate(await auth_service.user.get(session, principal.user.id))


@router.get("/me/permissions", response_model=list[str], tags=["me"])
async def list_my_permissions(principal: Authenticated) -> list[str]:
    return sorted(principal.permissions)


@router.get("/me/tokens", response_model=list[APITokenRead], tags=["me"])
async def list_my_tokens(principal: Authenticated, session: DBSession) -> list[APITokenRead]:
    rows = await auth_service.api_token.list_for(session, principal.user.id)
    return [APITokenRead.model_validate(r) for r in rows]


@router.post("/me/tokens", response_model=APITokenCreated, status_code=status.HTTP_201_CREATED, tags=["me"])
async def create_my_token(
    principal: Authenticated, session: DBSession, data: APITokenCreate
) -> APITokenCreated:
    secret, row = await auth_service.api_token.create(session, actor=principal, data=data)
    return APITokenCreated(**APITokenRead.model_validate(row).model_dump(), token=secret)


@router.delete("/me/tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["me"])
async def revoke_my_token(principal: Authenticated, session: DBSession, token_id: uuid.UUID) -> None:
    await auth_service.api_token.revoke(session, actor=principal, token_id=token_id)


@router.get("/users", response_model=Page[UserRead], tags=["users"])
async def list_users(
    _: UsersRead,
    session: DBSession,
    q: str | None = None,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0),
) -> Page[UserRead]:
    rows, total = await auth_service.user.search(session, limit=limit, offset=offset, query=q)
    return Page[UserRead](items=[UserRead.model_validate(r) for r in rows], total=total)


@router.post(
    "/users",
    response_model=UserRead,
    status_code=status.HTTP_201_CREATED,
    tags=["users"],
    responses={409: {"description": "Email already in use"}, 422: {"description": "Invalid data or role"}},
)
async def create_user(principal: UsersWrite, session: DBSession, data: UserCreate) -> UserRead:
    return UserRead.model_validate(await auth_service.user.create(session, actor=principal, data=data))


@router.get("/users/{user_id}", response_model=UserRead, tags=["users"])
async def read_user(_: UsersRead, session: DBSession, user_id: uuid.UUID) -> UserRead:
    return UserRead.model_validate(await auth_service.user.get(session, user_id))


@router.patch("/users/{user_id}", response_model=UserRead, tags=["users"])
async def update_user(
    principal: UsersWrite, session: DBSession, user_id: uuid.UUID, data: UserUpdate
) -> UserRead:
    return UserRead.model_validate(
        await auth_service.user.update(session, actor=principal, user_id=user_id, data=data)
    )


@router.get("/permissions", response_model=list[str], tags=["roles"])
async def list_permissions(_: RolesRead) -> list[str]:
    return sorted(ALL_PERMISSIONS)


@router.get("/roles", response_model=list[RoleRead], tags=["roles"])
async def list_roles(_: RolesRead, session: DBSession) -> list[RoleRead]:
    return [RoleRead.model_validate(r) for r in await auth_service.role.list_roles(session)]


@router.post("/roles", response_model=RoleRead, status_code=status.HTTP_201_CREATED, tags=["roles"])
async def create_role(principal: RolesWrite, session: DBSession, data: RoleCreate) -> RoleRead:
    return RoleRead.model_validate(await auth_service.role.create(session, actor=principal, data=data))


@router.patch("/roles/{role_id}", response_model=RoleRead, tags=["roles"])
async def update_role(
    principal: RolesWrite, session: DBSession, role_id: uuid.UUID, data: RoleUpdate
) -> RoleRead:
    return RoleRead.model_validate(
        await auth_service.role.update(session, actor=principal, role_id=role_id, data=data)
    )


@router.delete("/roles/{role_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["roles"])
async def delete_role(principal: RolesWrite, session: DBSession, role_id: uuid.UUID) -> None:
    await auth_service.role.delete(session, actor=principal, role_id=role_id)


@router.get("/teams", response_model=list[TeamRead], tags=["teams"])
async def list_teams(_: TeamsRead, session: DBSession) -> list[TeamRead]:
    return [_team_read(t) for t in await auth_service.team.list_teams(session)]


@router.post("/teams", response_model=TeamRead, status_code=status.HTTP_201_CREATED, tags=["teams"])
async def create_team(principal: TeamsWrite, session: DBSession, data: TeamCreate) -> TeamRead:
    return _team_read(await auth_service.team.create(session, actor=principal, data=data))


@router.patch("/teams/{team_id}", response_model=TeamRead, tags=["teams"])
async def update_team(
    principal: TeamsWrite, session: DBSession, team_id: uuid.UUID, data: TeamUpdate
) -> TeamRead:
    return _team_read(await auth_service.team.update(session, actor=principal, team_id=team_id, data=data))


@router.delete("/teams/{team_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["teams"])
async def delete_team(principal: TeamsWrite, session: DBSession, team_id: uuid.UUID) -> None:
    await auth_service.team.delete(session, actor=principal, team_id=team_id)


@router.get("/audit-logs", response_model=Page[AuditLogRead], tags=["audit"])
async def list_audit_logs(
    _: AuditRead,
    session: DBSession,
    target_type: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
) -> Page[AuditLogRead]:
    rows, total = await auth_service.audit.search(
        session, limit=limit, offset=offset, target_type=target_type
    )
    return Page[AuditLogRead](items=[AuditLogRead.model_validate(r) for r in rows], total=total)
