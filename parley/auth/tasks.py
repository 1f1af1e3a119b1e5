"""Housekeeping for sign-ins."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from parley.auth import service as auth_service
from parley.worker import periodic


@periodic("auth.prune", every_s=3600)
async def prune_expired(session: AsyncSession) -> dict[str, int]:
    sessions = await auth_service.user_session.prune(session)
    attempts = await auth_service.login.prune_attempts(session)
    return {"sessions": sessions, "login_attempts": attempts} if sessions or attempts else {}
