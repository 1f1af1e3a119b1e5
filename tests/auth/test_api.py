"""The REST API for people and permissions, as an integration would use it."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from parley.models import APIToken, AuditLog, Role, Team, User
from tests.fixtures.factories import create_token, create_user


class TestAuthentication:
    async def test_no_credentials_is_401(self, client):
        response = await client.get("/api/v1/users")
        assert response.status_code == 401
        assert response.json()["error"] == "Unauthorized"

    async def test_unknown_token_is_401(self, client):
        response = await client.get("/api/v1/me", headers={"Authorization": "Bearer pk_nope"})
        assert response.status_code == 401

    async def test_token_identifies_its_user(self, client, admin, admin_headers):
        response = await client.get("/api/v1/me", headers=admin_headers)
        assert response.status_code == 200
        assert response.json()["email"] == "admin@example.com"
        assert response.json()["role"]["name"] == "administrator"

    async def test_revoked_token_stops_working(self, client, admin_headers):
        created = await client.post("/api/v1/me/tokens", json={"name": "script"}, headers=admin_headers)
        assert created.status_code == 201
        secret = created.json()["token"]
        bearer = {"Authorization": f"Bearer {secret}"}
        assert (await client.get("/api/v1/me", headers=bearer)).status_code == 200
        revoked = await client.delete(f"/api/v1/me/tokens/{created.json()['id']}", headers=admin_headers)
        assert revoked.status_code == 204
        assert (await client.get("/api/v1/me", headers=bearer)).status_code == 401

    async def test_deactivated_users_token_is_refused(self, client, session, admin_headers):
        agent = await create_user(session, email="leaver@example.com", role="agent")
        token = await create_token(session, agent)
        await client.patch(f"/api/v1/users/{agent.id}", json={"is_active": False}, headers=admin_headers)
        response = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401

    async def test_a_new_tokens_first_call_may_be_a_write(self, client, session):
        # Its first use records "last used" while the endpoint's own write transaction is open.
        supervisor = await create_user(session, email="ops@example.com", role="supervisor")
        token = await create_token(session, supervisor)
        response = await client.post(
            "/api/v1/operations/delivery/retry", json={}, headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 200, response.text
        assert response.json()["retried"] == 0
        for _ in range(100):
            session.expire_all()
            await session.rollback()
            if await session.scalar(select(APIToken.last_used_at)):
                break
            await asyncio.sleep(0.02)
        assert await session.scalar(select(APIToken.last_used_at)) is not None


class TestPermissions:
    async def test_agent_cannot_list_users(self, client, session):
        agent = await create_user(session, email="agent@example.com", role="agent")
        token = await create_token(session, agent)
        response = await client.get("/api/v1/users", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 403
        assert "users.read" in response.json()["detail"]

    async def test_supervisor_reads_users_but_cannot_create(self, client, session):
        supervisor = await create_user(session, email="sup@example.com", role="supervisor")
        headers = {"Authorization": f"Bearer {await create_token(session, supervisor)}"}
        assert (await client.get("/api/v1/users", headers=headers)).status_code == 200
        response = await client.post(
            "/api/v1/users",
            json={"email": "x@example.com", "name": "X", "password": "longenough", "role": "agent"},
            headers=headers,
        )
        assert response.status_code == 403

    async def test_custom_role_grants_exactly_its_permissions(self, client, session, admin_headers):
        created = await client.post(
            "/api/v1/roles",
            json={"name": "auditor", "description": "Reads the audit log", "permissions": ["audit.read"]},
            headers=admin_headers,
        )
        assert created.status_code == 201
        auditor = await create_user(session, email="auditor@example.com", role="auditor")
        headers = {"Authorization": f"Bearer {await create_token(session, auditor)}"}
        assert (await client.get("/api/v1/audit-logs", headers=headers)).status_code == 200
        assert (await client.get("/api/v1/users", headers=headers)).status_code == 403

    async def test_unknown_permission_in_role_is_refused(self, client, session, admin_headers):
        response = await client.post(
            "/api/v1/roles", json={"name": "weird", "permissions": ["launch.missiles"]}, headers=admin_headers
        )
        assert response.status_code == 422
        assert "launch.missiles" in response.json()["detail"]
        assert await session.scalar(select(Role).where(Role.name == "weird")) is None

    async def test_builtin_role_cannot_be_deleted_or_changed(self, client, session, admin_headers):
        agent_role = await session.scalar(select(Role).where(Role.name == "agent"))
        assert (
            await client.delete(f"/api/v1/roles/{agent_role.id}", headers=admin_headers)
        ).status_code == 409
        response = await client.patch(
            f"/api/v1/roles/{agent_role.id}", json={"permissions": ["users.write"]}, headers=admin_headers
        )
        assert response.status_code == 409

    async def test_role_in_use_cannot_be_deleted(self, client, session, admin_headers):
        role = (
            await client.post(
                "/api/v1/roles", json={"name": "night", "permissions": []}, headers=admin_headers
            )
        ).json()
        await create_user(session, email="owl@example.com", role="night")
        response = await client.delete(f"/api/v1/roles/{role['id']}", headers=admin_headers)
        assert response.status_code == 409
        assert "still have" in response.json()["detail"]


class TestUserCreation:
    async def _count_users(self, session) -> int:
        return int(await session.scalar(select(func.count()).select_from(User)))

    async def test_creates_user_and_audits_it(self, client, session, admin, admin_headers):
        response = await client.post(
            "/api/v1/users",
            json={
                "email": "New@Example.com",
                "name": "New Agent",
                "password": "s3cret-pass",
                "role": "agent",
            },
            headers=admin_headers,
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["email"] == "new@example.com"
        assert "password" not in body and "password_hash" not in body
        entry = await session.scalar(
            select(AuditLog).where(AuditLog.action == "user.create", AuditLog.actor_id == admin.id)
        )
        assert entry is not None
        assert entry.changes["email"] == "new@example.com"

    async def test_duplicate_email_is_409_and_writes_nothing(self, client, session, admin_headers):
        payload = {"email": "dup@example.com", "name": "One", "password": "long-enough", "role": "agent"}
        assert (await client.post("/api/v1/users", json=payload, headers=admin_headers)).status_code == 201
        before = await self._count_users(session)
        audits = await session.scalar(select(func.count()).select_from(AuditLog))
        response = await client.post(
            "/api/v1/users",
            json={**payload, "email": "DUP@example.com", "name": "Two"},
            headers=admin_headers,
        )
        assert response.status_code == 409
        assert "dup@example.com" in response.json()["detail"]
        assert await self._count_users(session) == before
        assert await session.scalar(select(func.count()).select_from(AuditLog)) == audits

    async def test_empty_password_is_refused(self, client, session, admin_headers):
        before = await self._count_users(session)
        for password in ("", "        "):
            response = await client.post(
                "/api/v1/users",
                json={"email": "empty@example.com", "name": "E", "password": password, "role": "agent"},
                headers=admin_headers,
            )
            assert response.status_code == 422
        assert await self._count_users(session) == before

    async def test_unknown_role_is_refused(self, client, session, admin_headers):
        before = await self._count_users(session)
        response = await client.post(
            "/api/v1/users",
            json={"email": "r@example.com", "name": "R", "password": "long-enough", "role": "wizard"},
            headers=admin_headers,
        )
        assert response.status_code == 422
        assert response.json()["detail"] == "Unknown role 'wizard'"
        assert await self._count_users(session) == before

    async def test_invalid_time_zone_is_refused(self, client, admin_headers):
        response = await client.post(
            "/api/v1/users",
            json={
                "email": "tz@example.com",
                "name": "T",
                "password": "long-enough",
                "role": "agent",
                "timezone": "Mars/Base",
            },
            headers=admin_headers,
        )
        assert response.status_code == 422


class TestSelfProtection:
    async def test_admin_cannot_demote_or_deactivate_self(self, client, admin, admin_headers):
        demote = await client.patch(
            f"/api/v1/users/{admin.id}", json={"role": "agent"}, headers=admin_headers
        )
        assert demote.status_code == 409
        deactivate = await client.patch(
            f"/api/v1/users/{admin.id}", json={"is_active": False}, headers=admin_headers
        )
        assert deactivate.status_code == 409


class TestTeams:
    async def test_team_with_members_and_audit(self, client, session, admin_headers):
        one = await create_user(session, email="one@example.com", name="One")
        two = await create_user(session, email="two@example.com", name="Two")
        created = await client.post(
            "/api/v1/teams",
            json={"name": "Night shift", "member_ids": [str(one.id), str(two.id)]},
            headers=admin_headers,
        )
        assert created.status_code == 201
        assert sorted(created.json()["member_ids"]) == sorted([str(one.id), str(two.id)])
        updated = await client.patch(
            f"/api/v1/teams/{created.json()['id']}", json={"member_ids": [str(one.id)]}, headers=admin_headers
        )
        assert updated.json()["member_ids"] == [str(one.id)]
        log = (await client.get("/api/v1/audit-logs?target_type=team", headers=admin_headers)).json()
        assert [e["action"] for e in log["items"]] == ["team.update", "team.create"]
        assert log["items"][0]["changes"]["members"]["to"] == ["one@example.com"]

    async def test_unknown_member_writes_nothing(self, client, session, admin_headers):
        response = await client.post(
            "/api/v1/teams",
            json={"name": "Ghosts", "member_ids": ["00000000-0000-0000-0000-000000000001"]},
            headers=admin_headers,
        )
        assert response.status_code == 422
        assert await session.scalar(select(Team).where(Team.name == "Ghosts")) is None
