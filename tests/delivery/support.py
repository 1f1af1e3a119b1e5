"""Helpers for delivery tests: a WhatsApp simulator account wired to a Parley channel account."""

from __future__ import annotations

import secrets
import socket
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from parley.channels.base import OutboundMessage, OutboundType, Template
from parley.channels.schemas import ChannelAccountCreate
from parley.channels.service import channel_account
from parley.delivery.service import new_idempotency_key
from parley.kit.crypto import SecretBox
from parley.models import ChannelAccount

TEST_SECRET = "test-secret-key-not-for-production-0123456789"


def _digits(n: int) -> str:
    return str(secrets.randbelow(9 * 10 ** (n - 1)) + 10 ** (n - 1))


def closed_port_url() -> str:
    """A webhook URL nobody listens on: the simulator's status webhooks fail at once and are dropped."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/nowhere"


@dataclass
class SimAccount:
    sim_url: str
    waba_id: str
    phone_number_id: str
    access_token: str
    users: list[str]

    def limits(self, **values: Any) -> dict[str, Any]:
        response = httpx.post(
            f"{self.sim_url}/_sandbox/accounts/{self.waba_id}/limits", json=values, timeout=10
        )
        response.raise_for_status()
        return dict(response.json())

    def record(self) -> list[dict[str, Any]]:
        response = httpx.get(
            f"{self.sim_url}/_sandbox/record", params={"phone_number_id": self.phone_number_id}, timeout=60
        )
        response.raise_for_status()
        return list(response.json())

    def keys(self) -> Counter[str]:
        return Counter(str(entry["idempotency_key"]) for entry in self.record())


def register_sim_account(sim_url: str, *, users: int = 10, rate_per_s: float = 100_000) -> SimAccount:
    """Creates an account with ``users`` simulated customers; no status webhooks (not under test here)."""
    account = SimAccount(
        sim_url=sim_url,
        waba_id=_digits(15),
        phone_number_id=_digits(15),
        access_token="EAAG" + secrets.token_hex(16),
        users=[],
    )
    response = httpx.post(
        f"{sim_url}/_sandbox/accounts",
        json={
            "business_account_id": account.waba_id,
            "phone_numbers": [
                {"phone_number_id": account.phone_number_id, "display_phone_number": "15550001111"}
            ],
            "access_token": account.access_token,
            "app_secret": "app-secret",
            "verify_token": "verify-token",
            "webhook_url": closed_port_url(),
        },
        timeout=10,
    )
    response.raise_for_status()
    for _ in range(users):
        wa_id = "1" + _digits(11)
        httpx.post(
            f"{sim_url}/_sandbox/accounts/{account.waba_id}/users",
            json={"name": f"Customer {wa_id[-4:]}", "wa_id": wa_id},
            timeout=10,
        ).raise_for_status()
        account.users.append(wa_id)
    account.limits(
        rate_per_s=rate_per_s,
        unlimited_messaging=True,
        status_mode="manual",
        webhook_retry_delays_s=[],
        webhook_timeout_s=1.0,
        # Statuses still change in the record, but nothing is POSTed: thousands of status webhooks to a
        # closed port a second made the simulator, not Parley, the bottleneck of the worker tests.
        webhooks_subscribed=False,
    )
    return account


async def create_parley_account(session: AsyncSession, sim: SimAccount) -> ChannelAccount:
    account = await channel_account.create(
        session,
        actor=None,
        box=SecretBox(TEST_SECRET),
        data=ChannelAccountCreate.model_validate(
            {
                "type": "whatsapp",
                "name": f"WA {sim.phone_number_id[-4:]}",
                "api_base_url": sim.sim_url,
                "credentials": {
                    "phone_number_id": sim.phone_number_id,
                    "business_account_id": sim.waba_id,
                    "access_token": sim.access_token,
                    "app_secret": "app-secret",
                    "verify_token": "verify-token",
                },
            }
        ),
    )
    await session.commit()
    return account


def template_to(wa_id: str, key: str | None = None) -> OutboundMessage:
    """A template send: allowed outside the 24 h window, so no customer has to write first."""
    return OutboundMessage(
        to=wa_id,
        type=OutboundType.template,
        template=Template(name="hello_world", language="en_US"),
        idempotency_key=key or new_idempotency_key(),
    )


def text_to(wa_id: str) -> OutboundMessage:
    return OutboundMessage(
        to=wa_id, type=OutboundType.text, text="hello", idempotency_key=new_idempotency_key()
    )


def steady_rate_of(entries: list[dict[str, Any]]) -> float:
    """The rate between the 5th and 95th percentile of receipts: without the opening burst and the
    tail of sends the platform refused once (130429) and that came back after their backoff."""
    times = sorted(float(e["timestamp"]) for e in entries)
    low, high = int(len(times) * 0.05), int(len(times) * 0.95)
    return (high - low) / (times[high] - times[low])
