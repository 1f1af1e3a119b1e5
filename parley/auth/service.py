"""People and permissions: users, roles, teams, logins, sessions, API tokens and the audit log."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from parley.auth.permissions import ALL_PERMISSIONS, BUILTIN_ROLES
from parley.auth.schemas import (
    APITokenCreate,
    RoleCreate,
    RoleUpdate,
    TeamCreate,
    TeamUpdate,
    UserCreate,
    UserUpdate,
)
from parley.exceptions import Conflict, NotFound, TooManyRequests, Unauthorized, UnprocessableEntity
from parley.kit.crypto import new_token, token_hash
from parley.kit.types import utcnow
from parley.models import APIToken, AuditLog, LoginAttempt, Role, Team, User, UserSession

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


# Verifying against a real hash when the email is unknown keeps the response
# time the same, so timing does not reveal which emails have accounts.
_DUMMY_HASH = _hasher.hash("parley-timing-equaliser")


@dataclass(frozen=True)
class Principal:
    """Who is acting, with what permissions, and how they authenticated."""

    user: User
    permissions: frozenset[str]
    session: UserSession | None = None
    token: APIToken | None = None
    ip: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def can(self, permission: str) -> bool:
        return permission in self.permissions


def _normalise_email(email: str) -> str:
    return email.strip().lower()


class AuditService:
    async def record(
        self,
        session: AsyncSession,
        *,
        actor: Principal | None,
        action: str,
        target_type: str,
        target_id: uuid.UUID | None,
        changes: dict[str, Any] | None = None,
    ) -> None:
        """Appends an audit entry in the caller's transaction, so it exists only if the change does."""
        session.add(
            AuditLog(
                actor_id=actor.user.id if actor else None,
                actor_email=actor.user.email if actor else "",
                action=action,
                target_type=target_type,
                target_id=target_id,
                changes=changes or {},
                ip=actor.ip if actor else "",
            )
        )

    async def search(
        self, session: AsyncSession, *, limit: int = 100, offset: int = 0, target_type: str | None = None
    ) -> tuple[list[AuditLog], int]:
        stmt = select(AuditLog)
        count = select(func.count()).select_from(AuditLog)
        if target_type:
            stmt = stmt.where(AuditLog.target_type == target_type)
            count = count.where(AuditLog.target_type == target_type)
        rows = (await session.scalars(stmt.order_by(AuditLog.id.desc()).limit(limit).offset(offset))).all()
        return list(rows), int(await session.scalar(count) or 0)


audit = AuditService()


class RoleService:
    async def ensure_builtin(self, session: AsyncSession) -> None:
        """Creates the built-in roles and keeps their permission sets current."""
        existing = {r.name: r for r in (await session.scalars(select(Role))).all()}
        for name, (description, permissions) in BUILTIN_ROLES.items():
            role = existing.get(name)
            if role is None:
                session.add(
                    Role(
                        name=name,
                        description=description,
                        permissions=sorted(permissions),
                        is_builtin=True,
                    )
                )
            elif set(role.permissions) != set(permissions):
                role.permissions = sorted(permissions)
        await session.flush()

    async def list_roles(self, session: AsyncSession) -> list[Role]:
        return list((await session.scalars(select(Role).order_by(Role.is_builtin.desc(), Role.name))).all())

    async def get(self, session: AsyncSession, role_id: uuid.UUID) -> Role:
        role = await session.get(Role, role_id)
        if role is None:
            raise NotFound("Role not found")
        return role

    async def get_by_name(self, session: AsyncSession, name: str) -> Role:
        role = await session.scalar(select(Role).where(Role.name == name))
        if role is None:
            raise UnprocessableEntity(f"Unknown role '{name}'")
        return role

    @staticmethod
    def _check_permissions(permissions: list[str]) -> list[str]:
        unknown = sorted(set(permissions) - ALL_PERMISSIONS)
        if unknown:
            raise UnprocessableEntity(f"Unknown permissions: {', '.join(unknown)}")
        return sorted(set(permissions))

    async def create(self, session: AsyncSession, *, actor: Principal, data: RoleCreate) -> Role:
        if await session.scalar(select(Role.id).where(Role.name == data.name)):
            raise Conflict(f"A role named '{data.name}' already exists")
        role = Role(
            name=data.name,
            description=data.description,
            permissions=self._check_permissions(data.permissions),
            is_builtin=False,
        )
        session.add(role)
        await session.flush()
        await audit.record(
            session,
            actor=actor,
            action="role.create",
            target_type="role",
            target_id=role.id,
            changes={"name": role.name, "permissions": role.permissions},
        )
        return role

    async def update(
        self, session: AsyncSession, *, actor: Principal, role_id: uuid.UUID, data: RoleUpdate
    ) -> Role:
        role = await self.get(session, role_id)
        changes: dict[str, Any] = {}
        if data.permissions is not None:
            if role.is_builtin:
                raise Conflict("Built-in roles keep their permissions; create a new role instead")
            permissions = self._check_permissions(data.permissions)
            if permissions != role.permissions:
                changes["permissions"] = {"from": role.permissions, "to": permissions}
                role.permissions = permissions
        if data.description is not None and data.description != role.description:
            changes["description"] = {"from": role.description, "to": data.description}
            role.description = data.description
        if changes:
            await session.flush()
            await audit.record(
                session,
                actor=actor,
                action="role.update",
                target_type="role",
                target_id=role.id,
                changes=changes,
            )
        return role

    async def delete(self, session: AsyncSession, *, actor: Principal, role_id: uuid.UUID) -> None:
        role = await self.get(session, role_id)
        if role.is_builtin:
            raise Conflict("Built-in roles cannot be deleted")
        in_use = await session.scalar(select(func.count()).select_from(User).where(User.role_id == role.id))
        if in_use:
            raise Conflict(f"{in_use} user(s) still have the role '{role.name}'")
        await audit.record(
            session,
            actor=actor,
            action="role.delete",
            target_type="role",
            target_id=role.id,
            changes={"name": role.name},
        )
        await session.delete(role)
        await session.flush()


role = RoleService()


class UserService:
    def _base(self) -> Any:
        return select(User).options(selectinload(User.role))

    async def search(
        self, session: AsyncSession, *, limit: int = 100, offset: int = 0, query: str | None = None
    ) -> tuple[list[User], int]:
        stmt = self._base()
        count = select(func.count()).select_from(User)
        if query:
            like = f"%{query.lower()}%"
            cond = func.lower(User.email).like(like) | func.lower(User.name).like(like)
            stmt = stmt.where(cond)
            count = count.where(cond)
        rows = (await session.scalars(stmt.order_by(User.name).limit(limit).offset(offset))).all()
        return list(rows), int(await session.scalar(count) or 0)

    async def get(self, session: AsyncSession, user_id: uuid.UUID) -> User:
        user = await session.scalar(self._base().where(User.id == user_id))
        if user is None:
            raise NotFound("User not found")
        return user  # type: ignore[no-any-return]

    async def get_by_email(self, session: AsyncSession, email: str) -> User | None:
        return await session.scalar(self._base().where(User.email == _normalise_email(email)))  # type: ignore[no-any-return]

    async def create(self, session: AsyncSession, *, actor: Principal | None, data: UserCreate) -> User:
        email = _normalise_email(str(data.email))
        if not data.password.strip():
            raise UnprocessableEntity("Password must not be empty")
        role_row = await role.get_by_name(session, data.role)
        if await session.scalar(select(User.id).where(User.email == email)):
            raise Conflict(f"A user with the email {email} already exists")
        user = User(
            email=email,
            name=data.name,
            password_hash=hash_password(data.password),
            locale=data.locale,
            timezone=data.timezone,
            is_active=True,
            role_id=role_row.id,
        )
        session.add(user)
        await session.flush()
        await audit.record(
            session,
            actor=actor,
            action="user.create",
            target_type="user",
            target_id=user.id,
            changes={"email": email, "name": data.name, "role": role_row.name},
        )
        return await self.get(session, user.id)

    async def update(
        self, session: AsyncSession, *, actor: Principal | None, user_id: uuid.UUID, data: UserUpdate
    ) -> User:
        user = await self.get(session, user_id)
        changes: dict[str, Any] = {}
        if data.role is not None and data.role != user.role.name:
            new_role = await role.get_by_name(session, data.role)
            if actor is not None and actor.user.id == user.id:
                raise Conflict("You cannot change your own role")
            changes["role"] = {"from": user.role.name, "to": new_role.name}
            user.role_id = new_role.id
        for attr in ("name", "locale", "timezone", "is_active"):
            value = getattr(data, attr)
            if value is not None and value != getattr(user, attr):
                if attr == "is_active" and not value and actor is not None and actor.user.id == user.id:
                    raise Conflict("You cannot deactivate yourself")
                changes[attr] = {"from": getattr(user, attr), "to": value}
                setattr(user, attr, value)
        if data.password is not None:
            if not data.password.strip():
                raise UnprocessableEntity("Password must not be empty")
            user.password_hash = hash_password(data.password)
            changes["password"] = "changed"  # noqa: S105
        if data.is_active is False or "password" in changes:
            # A deactivated user, or one whose password changed, is signed out everywhere.
            await session.execute(delete(UserSession).where(UserSession.user_id == user.id))
        if changes:
            await session.flush()
            await audit.record(
                session,
                actor=actor,
                action="user.update",
                target_type="user",
                target_id=user.id,
                changes=changes,
            )
        # The role relationship may point at the old role; reload the user whole.
        session.expire(user)
        return await self.get(session, user_id)

    async def permissions_of(self, session: AsyncSession, user: User) -> frozenset[str]:
        role_row = await session.get(Role, user.role_id)
        return frozenset(role_row.permissions) if role_row else frozenset()


user = UserService()


class TeamService:
    async def list_teams(self, session: AsyncSession) -> list[Team]:
        stmt = select(Team).options(selectinload(Team.members)).order_by(Team.name)
        return list((await session.scalars(stmt)).all())

    async def get(self, session: AsyncSession, team_id: uuid.UUID) -> Team:
        team = await session.scalar(
            select(Team).options(selectinload(Team.members)).where(Team.id == team_id)
        )
        if team is None:
            raise NotFound("Team not found")
        return team

    async def _members(self, session: AsyncSession, member_ids: list[uuid.UUID]) -> list[User]:
        if not member_ids:
            return []
        users = list((await session.scalars(select(User).where(User.id.in_(member_ids)))).all())
        missing = set(member_ids) - {u.id for u in users}
        if missing:
            raise UnprocessableEntity(f"Unknown users: {', '.join(sorted(map(str, missing)))}")
        return users

    async def create(self, session: AsyncSession, *, actor: Principal, data: TeamCreate) -> Team:
        if await session.scalar(select(Team.id).where(Team.name == data.name)):
            raise Conflict(f"A team named '{data.name}' already exists")
        members = await self._members(session, data.member_ids)
        team = Team(name=data.name, description=data.description)
        team.members = members
        session.add(team)
        await session.flush()
        await audit.record(
            session,
            actor=actor,
            action="team.create",
            target_type="team",
            target_id=team.id,
            changes={"name": team.name, "members": sorted(u.email for u in members)},
        )
        return team

    async def update(
        self, session: AsyncSession, *, actor: Principal, team_id: uuid.UUID, data: TeamUpdate
    ) -> Team:
        team = await self.get(session, team_id)
        changes: dict[str, Any] = {}
        if data.name is not None and data.name != team.name:
            clash = await session.scalar(select(Team.id).where(Team.name == data.name, Team.id != team.id))
            if clash:
                raise Conflict(f"A team named '{data.name}' already exists")
            changes["name"] = {"from": team.name, "to": data.name}
            team.name = data.name
        if data.description is not None and data.description != team.description:
            changes["description"] = {"from": team.description, "to": data.description}
            team.description = data.description
        if data.member_ids is not None:
            members = await self._members(session, data.member_ids)
            before = sorted(u.email for u in team.members)
            after = sorted(u.email for u in members)
            if before != after:
                changes["members"] = {"from": before, "to": after}
                team.members = members
        if changes:
            await session.flush()
            await audit.record(
                session,
                actor=actor,
                action="team.update",
                target_type="team",
                target_id=team.id,
                changes=changes,
            )
        return team

    async def delete(self, session: AsyncSession, *, actor: Principal, team_id: uuid.UUID) -> None:
        team = await self.get(session, team_id)
        await audit.record(
            session,
            actor=actor,
            action="team.delete",
            target_type="team",
            target_id=team.id,
            changes={"name": team.name},
        )
        await session.delete(team)
        await session.flush()


team = TeamService()


class LoginService:
    async def authenticate(
        self,
        session: AsyncSession,
        *,
        email: str,
        password: str,
        ip: str,
        max_failures: int,
        window_s: int,
    ) -> User:
        """Checks a password login, refusing with 429 once an account has too many recent failures."""
        email = _normalise_email(email)
        since = utcnow() - timedelta(seconds=window_s)
        failures = int(
            await session.scalar(
                select(func.count())
                .select_from(LoginAttempt)
                .where(
                    LoginAttempt.email == email,
                    LoginAttempt.succeeded.is_(False),
                    LoginAttempt.created_at >= since,
                )
            )
            or 0
        )
        if failures >= max_failures:
            raise TooManyRequests("Too many failed sign-in attempts; wait a minute and try again", window_s)
        found = await user.get_by_email(session, email)
        ok = verify_password(found.password_hash if found else _DUMMY_HASH, password)
        ok = ok and found is not None and found.is_active
        session.add(LoginAttempt(email=email, ip=ip, succeeded=ok))
        await session.flush()
        if not ok or found is None:
            raise Unauthorized("Wrong email or password")
        if _hasher.check_needs_rehash(found.password_hash):
            found.password_hash = hash_password(password)
        found.last_login_at = utcnow()
        return found

    async def prune_attempts(self, session: AsyncSession, *, older_than_s: int = 86400) -> int:
        result = await session.execute(
            delete(LoginAttempt).where(LoginAttempt.created_at < utcnow() - timedelta(seconds=older_than_s))
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


login = LoginService()


class SessionService:
    async def create(
        self, session: AsyncSession, *, user_row: User, max_age_s: int, ip: str, user_agent: str
    ) -> tuple[str, UserSession]:
        token = new_token()
        row = UserSession(
            token_hash=token_hash(token),
            csrf_token=new_token(24),
            user_id=user_row.id,
            expires_at=utcnow() + timedelta(seconds=max_age_s),
            ip=ip,
            user_agent=user_agent[:300],
        )
        session.add(row)
        await session.flush()
        return token, row

    async def resolve(self, session: AsyncSession, token: str) -> UserSession | None:
        row = await session.scalar(
            select(UserSession)
            .options(selectinload(UserSession.user))
            .where(UserSession.token_hash == token_hash(token))
        )
        if row is None or row.expires_at <= utcnow() or not row.user.is_active:
            return None
        return row

    async def end(self, session: AsyncSession, token: str) -> None:
        await session.execute(delete(UserSession).where(UserSession.token_hash == token_hash(token)))

    async def prune(self, session: AsyncSession) -> int:
        result = await session.execute(delete(UserSession).where(UserSession.expires_at <= utcnow()))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


user_session = SessionService()


class APITokenService:
    PREFIX = "pk_"

    async def create(
        self, session: AsyncSession, *, actor: Principal, data: APITokenCreate
    ) -> tuple[str, APIToken]:
        secret = self.PREFIX + new_token()
        row = APIToken(
            user_id=actor.user.id,
            name=data.name,
            token_hash=token_hash(secret),
            prefix=secret[:10],
            expires_at=utcnow() + timedelta(days=data.expires_in_days) if data.expires_in_days else None,
        )
        session.add(row)
        await session.flush()
        await audit.record(
            session,
            actor=actor,
            action="api_token.create",
            target_type="api_token",
            target_id=row.id,
            changes={"name": row.name},
        )
        return secret, row

    async def list_for(self, session: AsyncSession, user_id: uuid.UUID) -> list[APIToken]:
        stmt = (
            select(APIToken)
            .where(APIToken.user_id == user_id, APIToken.revoked_at.is_(None))
            .order_by(APIToken.created_at.desc())
        )
        return list((await session.scalars(stmt)).all())

    async def revoke(self, session: AsyncSession, *, actor: Principal, token_id: uuid.UUID) -> None:
        row = await session.get(APIToken, token_id)
        if row is None or row.user_id != actor.user.id or row.revoked_at is not None:
            raise NotFound("Token not found")
        row.revoked_at = utcnow()
        await audit.record(
            session,
            actor=actor,
            action="api_token.revoke",
            target_type="api_token",
            target_id=row.id,
            changes={"name": row.name},
        )

    async def resolve(self, session: AsyncSession, secret: str) -> APIToken | None:
        row = await session.scalar(
            select(APIToken)
            .options(selectinload(APIToken.user))
            .where(APIToken.token_hash == token_hash(secret))
        )
        now = utcnow()
        if row is None or row.revoked_at is not None or not row.user.is_active:
            return None
        if row.expires_at is not None and row.expires_at <= now:
            return None
        return row

    def needs_touch(self, row: APIToken) -> bool:
        """Whether to record use now: at most once a minute, so a busy integration does not write on every call."""
        return row.last_used_at is None or utcnow() - row.last_used_at > timedelta(minutes=1)

    async def touch(self, session: AsyncSession, token_id: uuid.UUID) -> None:
        await session.execute(update(APIToken).where(APIToken.id == token_id).values(last_used_at=utcnow()))


api_token = APITokenService()
