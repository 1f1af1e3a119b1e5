"""Demo data: people, teams and (once channels exist) accounts wired to the simulators."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.auth import service as auth_service
from parley.auth.schemas import TeamCreate, UserCreate
from parley.models import Team


@dataclass(frozen=True)
class DemoLogin:
    email: str
    password: str
    name: str
    role: str
    locale: str = "en"


DEMO_ADMIN = DemoLogin("admin@parley.demo", "parley-admin", "Ada Admin", "administrator")
DEMO_LOGINS = (
    DEMO_ADMIN,
    DemoLogin("supervisor@parley.demo", "parley-supervisor", "Sam Supervisor", "supervisor"),
    DemoLogin("agent@parley.demo", "parley-agent", "Li Wei", "agent", "zh_CN"),
    DemoLogin("agent2@parley.demo", "parley-agent", "Maria Agent", "agent"),
)


async def seed_people(session: AsyncSession) -> None:
    """Creates the demo logins and teams; running it again changes nothing."""
    await auth_service.role.ensure_builtin(session)
    users = {}
    for login in DEMO_LOGINS:
        existing = await auth_service.user.get_by_email(session, login.email)
        if existing is None:
            existing = await auth_service.user.create(
                session,
                actor=None,
                data=UserCreate(
                    email=login.email,
                    name=login.name,
                    password=login.password,
                    role=login.role,
                    locale=login.locale,
                    timezone="Asia/Shanghai",
                ),
            )
        users[login.email] = existing
    if not await session.scalar(select(Team.id).where(Team.name == "Customer care")):
        admin = users[DEMO_ADMIN.email]
        principal = auth_service.Principal(user=admin, permissions=frozenset())
        await auth_service.team.create(
            session,
            actor=principal,
            data=TeamCreate(
                name="Customer care",
                description="First-line chat on WeChat and WhatsApp",
                member_ids=[users["agent@parley.demo"].id, users["agent2@parley.demo"].id],
            ),
        )
