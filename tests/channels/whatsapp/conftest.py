"""WhatsApp adapter fixtures: the simulator and a webhook receiver on real local ports."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import aiohttp
import httpx
import pytest

from parley.channels.base import AccountContext
from parley.channels.whatsapp.adapter import WhatsAppAdapter
from parley.sandbox.whatsapp.app import create_app
from parley.sandbox.whatsapp.testing import WebhookReceiver, seed_account, serve, serve_receiver
from tests.channels.whatsapp.whatsapp_support import (
    ANA,
    APP_SECRET,
    BO,
    LEGACY,
    NUMBER,
    SECOND_NUMBER,
    TOKEN,
    VERIFY_TOKEN,
    WABA,
    NoTokens,
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
    """The simulator's control API, reset, with one account (two numbers) and three users."""
    async with httpx.AsyncClient(base_url=sandbox_url, timeout=30) as client:
        await seed_account(
            client,
            receiver,
            business_account_id=WABA,
            phone_numbers=[
                {
                    "phone_number_id": NUMBER,
                    "display_phone_number": "15550783881",
                    "verified_name": "Parley Shop",
                },
                {
                    "phone_number_id": SECOND_NUMBER,
                    "display_phone_number": "15550783882",
                    "verified_name": "Parley Care",
                },
            ],
            access_token=TOKEN,
            app_secret=APP_SECRET,
            verify_token=VERIFY_TOKEN,
            users=[ANA, BO, LEGACY],
            limits={"webhook_retry_delays_s": [0, 0, 0], "status_delay_s": 0, "webhook_timeout_s": 5},
        )
        yield client
        await client.post("/_sandbox/idle")


@pytest.fixture(params=["httpx", "aiohttp"])
async def adapter(sandbox_url: str, request: pytest.FixtureRequest) -> AsyncIterator[WhatsAppAdapter]:
    """The adapter as every caller builds it, and as the delivery engine uses it (sends through aiohttp)."""
    async with httpx.AsyncClient() as http, aiohttp.ClientSession() as session:
        context = AccountContext(
            account_id="acc-wa",
            external_id=NUMBER,
            api_base_url=sandbox_url,
            config={"phone_number_id": NUMBER, "business_account_id": WABA, "api_version": "v25.0"},
            secrets={"access_token": TOKEN, "app_secret": APP_SECRET, "verify_token": VERIFY_TOKEN},
        )
        adapter = WhatsAppAdapter(context, http, NoTokens())
        if request.param == "aiohttp":
            adapter.use_session(session)
        yield adapter


@pytest.fixture
def offline_adapter() -> WhatsAppAdapter:
    """An adapter for webhook-side tests; it never sends."""
    context = AccountContext(
        account_id="acc-wa",
        external_id=NUMBER,
        api_base_url="http://127.0.0.1:9",
        config={"phone_number_id": NUMBER, "business_account_id": WABA},
        secrets={"access_token": TOKEN, "app_secret": APP_SECRET, "verify_token": VERIFY_TOKEN},
    )
    return WhatsAppAdapter(context, httpx.AsyncClient(), NoTokens())
