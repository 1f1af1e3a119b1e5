"""Connecting channel accounts: credentials encrypted at rest and never shown again."""

from __future__ import annotations

import subprocess
import sys

from sqlalchemy import func, select

from parley.models import AuditLog, ChannelAccount
from tests.channels.test_webhooks import WA, WX


async def _create(client, headers, channel="wechat", **overrides):
    credentials = {**WX, "encryption_mode": "safe"} if channel == "wechat" else dict(WA)
    credentials.update(overrides)
    return await client.post(
        "/api/v1/channel-accounts",
        json={
            "type": channel,
            "name": "Chongqing",
            "api_base_url": "http://127.0.0.1:9101",
            "credentials": credentials,
        },
        headers=headers,
    )


class TestCreate:
    async def test_secrets_are_encrypted_and_masked(self, client, session, admin_headers):
        response = await _create(client, admin_headers)
        assert response.status_code == 201
        body = response.json()
        assert body["config"]["app_id"] == WX["app_id"]
        assert body["secrets"]["app_secret"].endswith(WX["app_secret"][-4:])
        assert WX["app_secret"] not in response.text and WX["encoding_aes_key"] not in response.text
        assert body["webhook_url"].endswith(f"/channels/wechat/{body['id']}/webhook")
        row = await session.scalar(select(ChannelAccount))
        assert WX["app_secret"] not in row.secrets_sealed and WX["token"] not in row.secrets_sealed
        audit = await session.scalar(select(AuditLog).where(AuditLog.action == "channel_account.create"))
        assert WX["app_secret"] not in str(audit.changes)

    async def test_invalid_credentials_are_refused_and_nothing_is_written(
        self, client, session, admin_headers
    ):
        response = await _create(client, admin_headers, encoding_aes_key="too-short")
        assert response.status_code == 422
        assert "encoding_aes_key" in response.json()["detail"]
        assert await session.scalar(select(func.count()).select_from(ChannelAccount)) == 0

    async def test_the_same_platform_account_cannot_be_connected_twice(self, client, admin_headers):
        assert (await _create(client, admin_headers)).status_code == 201
        again = await _create(client, admin_headers)
        assert again.status_code == 409

    async def test_agents_cannot_connect_accounts(self, client, session):
        from tests.fixtures.factories import create_token, create_user

        agent = await create_user(session, email="agent@example.com")
        response = await _create(client, {"Authorization": f"Bearer {await create_token(session, agent)}"})
        assert response.status_code == 403


class TestUpdate:
    async def test_rotating_a_secret_keeps_the_others(self, client, admin_headers):
        account = (await _create(client, admin_headers)).json()
        response = await client.patch(
            f"/api/v1/channel-accounts/{account['id']}",
            json={"credentials": {"app_secret": "rotated-secret-000000000000000000"}},
            headers=admin_headers,
        )
        assert response.status_code == 200
        assert response.json()["secrets"]["app_secret"].endswith("0000")
        assert response.json()["secrets"]["token"] == account["secrets"]["token"]


class TestSenders:
    async def test_whatsapp_account_has_several_numbers_one_primary(self, client, admin_headers):
        account = (await _create(client, admin_headers, channel="whatsapp")).json()
        assert [(s["external_id"], s["is_primary"]) for s in account["senders"]] == [
            (WA["phone_number_id"], True)
        ]
        second = await client.post(
            f"/api/v1/channel-accounts/{account['id']}/senders",
            json={"external_id": "106540352242999", "phone_number": "+86 23 6000 0001", "is_primary": True},
            headers=admin_headers,
        )
        assert second.status_code == 201
        senders = (
            await client.get(f"/api/v1/channel-accounts/{account['id']}", headers=admin_headers)
        ).json()["senders"]
        assert {s["external_id"]: s["is_primary"] for s in senders} == {
            WA["phone_number_id"]: False,
            "106540352242999": True,
        }

    async def test_wechat_accounts_have_no_extra_senders(self, client, admin_headers):
        account = (await _create(client, admin_headers)).json()
        response = await client.post(
            f"/api/v1/channel-accounts/{account['id']}/senders",
            json={"external_id": "x"},
            headers=admin_headers,
        )
        assert response.status_code == 422


def test_cli_adds_and_lists_accounts(tmp_path):
    env = {
        "PARLEY_DATA_DIR": str(tmp_path),
        "PARLEY_BASE_URL": "https://crm.example.com",
        "PATH": "/usr/bin:/bin",
    }
    added = subprocess.run(
        [
            sys.executable,
            "-m",
            "parley",
            "channel",
            "add",
            "wechat",
            "--name",
            "Chongqing",
            "--app-id",
            WX["app_id"],
            "--app-secret",
            WX["app_secret"],
            "--token",
            WX["token"],
            "--encoding-aes-key",
            WX["encoding_aes_key"],
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert added.returncode == 0, added.stderr
    assert "Webhook URL: https://crm.example.com/channels/wechat/" in added.stdout
    duplicate = subprocess.run(
        [
            sys.executable,
            "-m",
            "parley",
            "channel",
            "add",
            "wechat",
            "--name",
            "Again",
            "--app-id",
            WX["app_id"],
            "--app-secret",
            WX["app_secret"],
            "--token",
            WX["token"],
            "--encoding-aes-key",
            WX["encoding_aes_key"],
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert duplicate.returncode == 2 and "already connected" in duplicate.stderr
    listed = subprocess.run(
        [sys.executable, "-m", "parley", "channel", "list"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert "Chongqing" in listed.stdout and WX["app_secret"] not in listed.stdout
