from __future__ import annotations

import uuid
from datetime import datetime
from zoneinfo import available_timezones

from pydantic import EmailStr, Field, field_validator

from parley.kit.schemas import Schema

SUPPORTED_LOCALES = ("en", "zh_CN")
_TIMEZONES = frozenset(available_timezones())


def _check_locale(value: str) -> str:
    if value not in SUPPORTED_LOCALES:
        raise ValueError(f"locale must be one of {', '.join(SUPPORTED_LOCALES)}")
    return value


def _check_timezone(value: str) -> str:
    if value not in _TIMEZONES:
        raise ValueError(f"unknown time zone {value!r}")
    return value


class RoleRef(Schema):
    id: uuid.UUID
    name: str


class UserRead(Schema):
    id: uuid.UUID
    email: str
    name: str
    locale: str
    timezone: str
    is_active: bool
    role: RoleRef
    created_at: datetime
    last_login_at: datetime | None


class UserCreate(Schema):
    email: EmailStr
    name: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=8, max_length=256)
    role: str = Field(description="Role name, e.g. administrator, supervisor, agent")
    locale: str = "en"
    timezone: str = "UTC"

    _locale = field_validator("locale")(_check_locale)
    _tz = field_validator("timezone")(_check_timezone)


class UserUpdate(Schema):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    password: str | None = Field(default=None, min_length=8, max_length=256)
    role: str | None = None
    locale: str | None = None
    timezone: str | None = None
    is_active: bool | None = None

    @field_validator("locale")
    @classmethod
    def _locale(cls, v: str | None) -> str | None:
        return None if v is None else _check_locale(v)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str | None) -> str | None:
        return None if v is None else _check_timezone(v)


class RoleRead(Schema):
    id: uuid.UUID
    name: str
    description: str
    permissions: list[str]
    is_builtin: bool


class RoleCreate(Schema):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_\-]*$")
    description: str = ""
    permissions: list[str] = Field(default_factory=list)


class RoleUpdate(Schema):
    description: str | None = None
    permissions: list[str] | None = None


class TeamRead(Schema):
    id: uuid.UUID
    name: str
    description: str
    member_ids: list[uuid.UUID]


class TeamCreate(Schema):
    name: str = Field(min_length=1, max_length=120)
    description: str = ""
    member_ids: list[uuid.UUID] = Field(default_factory=list)


class TeamUpdate(Schema):
    name: str | None = Field(default=None, min_length=1, max_length=120)
    description: str | None = None
    member_ids: list[uuid.UUID] | None = None


class APITokenCreate(Schema):
    name: str = Field(min_length=1, max_length=120)
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)


class APITokenRead(Schema):
    id: uuid.UUID
    name: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None


class APITokenCreated(APITokenRead):
    token: str = Field(description="Shown once; store it now")


class AuditLogRead(Schema):
    id: int
    actor_id: uuid.UUID | None
    actor_email: str
    action: str
    target_type: str
    target_id: uuid.UUID | None
    changes: dict[str, object]
    ip: str
    created_at: datetime
