"""WhatsApp simulator fixtures: the simulator and a webhook receiver on real local ports."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from parley.sandbox.whatsapp.app import create_app
from parley.sandbox.whatsapp.testing import WebhookReceiver, seed_account, serve, serve_receiver
from tests.sandbox.whatsapp.whatsapp_sandbox_support import (
    ANA,
    APP_SECRET,
    NUMBER,
    TOKEN,
    VERIFY_TOKEN,
    WABA,
    ZOE,
)


@pytest.fixture(scope="session")
def sandbox_url() -> Iterator[str]:
    with serve(create_app()) as url:
        yield url


@pytest.fixture(scope="session")
def receiver() -> Iterator[WebhookReceiver]:
    with serve_receiver(app_secret=APP_SECRET, verify_token=VERIFY_TOKEN, phone_number_id=NUMBER) as receiver:
        yield receiver


@pytest.fixture
async def sim(sandbox_url: str, receiver: WebhookReceiver) -> AsyncIterator[httpx.AsyncClient]:
    """The simulator's control API, reset, with one account and two users (one hides their number)."""
    async with httpx.AsyncClient(base_url=sandbox_url, timeout=30) as client:
        await seed_account(
            client,
            receiver,
            business_account_id=WABA,
            phone_numbers=[
                {
                    "phone_number_id": NUMBER,
                    "display_phone_number": "15550001111",
                    "verified_name": "Sandbox Shop",
                }
            ],
            access_token=TOKEN,
            app_secret=APP_SECRET,
            verify_token=VERIFY_TOKEN,
            users=[ANA, ZOE],
            limits={"webhook_retry_delays_s": [0, 0, 0], "status_delay_s": 0},
        )
        yield client
        await client.post("/_sandbox/idle")
