"""The adapter and client against the simulator over real HTTP (PROTOCOLS.md 2.5, 2.6)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import aiohttp
import httpx
import pytest

from parley.channels.base import (
    AccountContext,
    ChannelPermanentError,
    ChannelQuotaExceededError,
    ChannelRetriableError,
    ChannelWindowClosedError,
    InboundKind,
    Location,
    Media,
    OutboundMessage,
    OutboundType,
    Template,
)
from parley.channels.whatsapp import WhatsAppAdapter, check_can_send
from parley.sandbox.whatsapp.testing import WebhookReceiver
from tests.channels.whatsapp.whatsapp_support import ANA, BO, LEGACY, NUMBER, SECOND_NUMBER, WABA, NoTokens

BUTTONS = {
    "type": "button",
    "body": {"text": "Close ticket A-1001?"},
    "action": {
        "buttons": [
            {"type": "reply", "reply": {"id": "ticket:A-1001:close", "title": "Close ticket"}},
            {"type": "reply", "reply": {"id": "ticket:A-1001:keep", "title": "Keep open"}},
        ]
    },
}


async def user_says(sim: httpx.AsyncClient, who: dict[str, Any], **action: Any) -> dict[str, Any]:
    response = await sim.post(
        f"/_sandbox/accounts/{WABA}/users/{who['wa_id']}/actions", json={"type": "text", **action}
    )
    response.raise_for_status()
    return response.json()  # type: ignore[no-any-return]


async def record(sim: httpx.AsyncClient, **params: str) -> list[dict[str, Any]]:
    return (await sim.get("/_sandbox/record", params=params)).json()  # type: ignore[no-any-return]


def text(to: str, body: str, key: str, **extra: Any) -> OutboundMessage:
    return OutboundMessage(to=to, type=OutboundType.text, text=body, idempotency_key=key, **extra)


class TestSend:
    async def test_text_reply_is_recorded(self, sim: httpx.AsyncClient, adapter: WhatsAppAdapter) -> None:
        inbound = await user_says(sim, ANA, text="Hello, is my order shipped?")
        result = await adapter.send(
            text(ANA["wa_id"], "Yes, see https://example.com/t/1", "out-1", reply_to=inbound["wamid"])
        )
        [sent] = await record(sim)
        assert sent["wamid"] == result.platform_message_id
        assert (sent["phone_number_id"], sent["to"], sent["type"]) == (NUMBER, ANA["wa_id"], "text")
        assert sent["content"] == {"preview_url": True, "body": "Yes, see https://example.com/t/1"}
        assert sent["context_message_id"] == inbound["wamid"]
        assert sent["idempotency_key"] == sent["idempotency_header"] == "out-1"
        assert sent["duplicate"] is False

    async def test_chinese_text_and_a_very_large_number_arrive_as_written(
        self, sim: httpx.AsyncClient, adapter: WhatsAppAdapter
    ) -> None:
        await user_says(sim, ANA, text="你好")
        await adapter.send(text(ANA["wa_id"], "您的订单已发货 🚚", "out-zh"))
        # Beyond 64 bits: the fast encoder refuses it, the send must not.
        body = {**BUTTONS, "body": {"text": "Ticket 2^70?"}, "x_ref": 2**70}
        await adapter.send(
            OutboundMessage(
                to=ANA["wa_id"], type=OutboundType.interactive, interactive=body, idempotency_key="i-big"
            )
        )
        zh, big = await record(sim)
        assert zh["content"]["body"] == "您的订单已发货 🚚"
        assert big["content"]["x_ref"] == 2**70

    async def test_bsuid_recipient(self, sim: httpx.AsyncClient, adapter: WhatsAppAdapter) -> None:
        await user_says(sim, BO, text="hi, I'm a username user")
        await adapter.send(text(BO["bsuid"], "Hi Bo", "out-bsuid"))
        [sent] = await record(sim)
        assert (sent["recipient_field"], sent["wa_id"]) == ("recipient", BO["wa_id"])

    async def test_retry_with_the_same_key_is_answered_once(
        self, sim: httpx.AsyncClient, adapter: WhatsAppAdapter
    ) -> None:
        await user_says(sim, ANA, text="hi")
        first = await adapter.send(text(ANA["wa_id"], "one", "same-key"))
        again = await adapter.send(text(ANA["wa_id"], "one", "same-key"))
        # The simulator plays the platform-side idempotency key: same answer, recorded once.
        assert again.platform_message_id == first.platform_message_id
        assert [r["idempotency_key"] for r in await record(sim)] == ["same-key"]

    async def test_media_by_id_and_by_link(self, sim: httpx.AsyncClient, adapter: WhatsAppAdapter) -> None:
        await user_says(sim, ANA, text="send me the invoice")
        media_id = await adapter.client.upload_media(
            NUMBER, b"\x89PNG fake", mime_type="image/png", filename="p.png"
        )
        await adapter.send(
            OutboundMessage(
                to=ANA["wa_id"],
                type=OutboundType.image,
                media=Media(media_id=media_id, caption="Your parcel"),
                idempotency_key="m1",
            )
        )
        await adapter.send(
            OutboundMessage(
                to=ANA["wa_id"],
                type=OutboundType.file,
                media=Media(url="https://example.com/invoice.pdf", filename="invoice.pdf"),
                text="Invoice",
                idempotency_key="m2",
            )
        )
        await adapter.send(
            OutboundMessage(
                to=ANA["wa_id"], type=OutboundType.voice, media=Media(media_id=media_id), idempotency_key="m3"
            )
        )
        await adapter.send(
            OutboundMessage(
                to=ANA["wa_id"],
                type=OutboundType.image,
                media=Media(media_id=media_id, format="sticker"),
                idempotency_key="m4",
            )
        )
        sent = await record(sim)
        assert [(r["type"], r["content"]) for r in sent] == [
            ("image", {"id": media_id, "caption": "Your parcel"}),
            (
                "document",
                {"link": "https://example.com/invoice.pdf", "caption": "Invoice", "filename": "invoice.pdf"},
            ),
            ("audio", {"id": media_id}),
            ("sticker", {"id": media_id}),
        ]

    async def test_unknown_media_id_is_permanent(
        self, sim: httpx.AsyncClient, adapter: WhatsAppAdapter
    ) -> None:
        await user_says(sim, ANA, text="hi")
        with pytest.raises(ChannelPermanentError) as caught:
            await adapter.send(
                OutboundMessage(
                    to=ANA["wa_id"], type=OutboundType.image, media=Media(media_id="404"), idempotency_key="k"
                )
            )
        assert caught.value.code == 100

    async def test_location_and_reaction(self, sim: httpx.AsyncClient, adapter: WhatsAppAdapter) -> None:
        inbound = await user_says(sim, ANA, text="where are you?")
        await adapter.send(
            OutboundMessage(
                to=ANA["wa_id"],
                type=OutboundType.location,
                location=Location(latitude=52.52, longitude=13.4, name="Shop"),
                idempotency_key="l",
            )
        )
        await adapter.send(
            OutboundMessage(
                to=ANA["wa_id"],
                type=OutboundType.reaction,
                text="👍",
                reply_to=inbound["wamid"],
                idempotency_key="r",
            )
        )
        location, reaction = await record(sim)
        assert location["content"] == {"latitude": 52.52, "longitude": 13.4, "name": "Shop"}
        assert reaction["content"] == {"message_id": inbound["wamid"], "emoji": "👍"}
        assert reaction["context_message_id"] is None

    async def test_template_outside_the_window(
        self, sim: httpx.AsyncClient, adapter: WhatsAppAdapter
    ) -> None:
        components = [
            {
                "type": "body",
                "parameters": [
                    {"type": "text", "text": "Lee"},
                    {"type": "text", "text": "A-1"},
                    {"type": "text", "text": "shipped"},
                ],
            }
        ]
        message = OutboundMessage(
            to=LEGACY["wa_id"],
            type=OutboundType.template,
            template=Template(name="order_update", language="en_US", components=components),
            idempotency_key="t1",
        )
        check_can_send(message.type, None, datetime.now(UTC))
        result = await adapter.send(message)
        assert result.raw["messages"][0]["message_status"] == "accepted"
        [sent] = await record(sim, to=LEGACY["wa_id"])
        assert sent["template"] == {
            "name": "order_update",
            "language": {"code": "en_US"},
            "components": components,
        }

    async def test_interactive_buttons_round_trip(
        self, sim: httpx.AsyncClient, adapter: WhatsAppAdapter, receiver: WebhookReceiver
    ) -> None:
        await user_says(sim, ANA, text="please close my ticket")
        result = await adapter.send(
            OutboundMessage(
                to=ANA["wa_id"], type=OutboundType.interactive, interactive=BUTTONS, idempotency_key="i1"
            )
        )
        [sent] = await record(sim)
        assert sent["content"] == BUTTONS
        await user_says(
            sim,
            ANA,
            type="interactive",
            reply_id="ticket:A-1001:close",
            context_message_id=result.platform_message_id,
        )
        tap = [e for e in receiver.events if e.type == "interactive"][-1]
        assert (tap.data["reply_id"], tap.text, tap.reply_to) == (
            "ticket:A-1001:close",
            "Close ticket",
            result.platform_message_id,
        )

    async def test_second_sender(
        self, sim: httpx.AsyncClient, adapter: WhatsAppAdapter, receiver: WebhookReceiver
    ) -> None:
        await user_says(sim, ANA, text="hello care team", to_phone_number_id=SECOND_NUMBER)
        assert receiver.events[-1].account_external_id == SECOND_NUMBER
        await adapter.send(text(ANA["wa_id"], "Care here", "s2", sender_external_id=SECOND_NUMBER))
        [sent] = await record(sim)
        assert sent["phone_number_id"] == SECOND_NUMBER

    @pytest.mark.parametrize(
        "message",
        [
            OutboundMessage(to="1", type=OutboundType.news, idempotency_key="k"),
            OutboundMessage(to="1", type=OutboundType.text, text=" ", idempotency_key="k"),
            OutboundMessage(to="1", type=OutboundType.text, text="x" * 4097, idempotency_key="k"),
            OutboundMessage(to="1", type=OutboundType.image, idempotency_key="k"),
            OutboundMessage(
                to="1", type=OutboundType.template, template=Template(name="t"), idempotency_key="k"
            ),
            OutboundMessage(to="1", type=OutboundType.reaction, text="👍", idempotency_key="k"),
            OutboundMessage(
                to="1",
                type=OutboundType.interactive,
                interactive={
                    "type": "button",
                    "body": {"text": "?"},
                    "action": {
                        "buttons": [
                            {"type": "reply", "reply": {"id": str(i), "title": "t"}} for i in range(4)
                        ]
                    },
                },
                idempotency_key="k",
            ),
            OutboundMessage(
                to="1",
                type=OutboundType.interactive,
                interactive={
                    "type": "list",
                    "body": {"text": "?"},
                    "action": {
                        "button": "Menu",
                        "sections": [{"title": "s", "rows": [{"id": "r", "title": "x" * 25}]}],
                    },
                },
                idempotency_key="k",
            ),
        ],
    )
    async def test_refused_before_sending(
        self, sim: httpx.AsyncClient, adapter: WhatsAppAdapter, message: OutboundMessage
    ) -> None:
        with pytest.raises(ChannelPermanentError):
            await adapter.send(message)
        assert await record(sim) == []


class TestOutcomes:
    async def test_window_closed_on_the_platform(
        self, sim: httpx.AsyncClient, adapter: WhatsAppAdapter
    ) -> None:
        with pytest.raises(ChannelWindowClosedError) as caught:
            await adapter.send(text(LEGACY["wa_id"], "hello?", "w1"))
        assert caught.value.code == 131047

    async def test_window_closes_after_24_hours(
        self, sim: httpx.AsyncClient, adapter: WhatsAppAdapter
    ) -> None:
        await user_says(sim, ANA, text="hi")
        await adapter.send(text(ANA["wa_id"], "inside", "w2"))
        await sim.post("/_sandbox/clock", json={"advance_s": 24 * 3600 + 5})
        with pytest.raises(ChannelWindowClosedError):
            await adapter.send(text(ANA["wa_id"], "too late", "w3"))
        await adapter.send(
            OutboundMessage(
                to=ANA["wa_id"],
                type=OutboundType.template,
                template=Template(name="hello_world", language="en_US"),
                idempotency_key="w4",
            )
        )

    async def test_unknown_template(self, sim: httpx.AsyncClient, adapter: WhatsAppAdapter) -> None:
        with pytest.raises(ChannelPermanentError) as caught:
            await adapter.send(
                OutboundMessage(
                    to=ANA["wa_id"],
                    type=OutboundType.template,
                    template=Template(name="nope", language="en_US"),
                    idempotency_key="t",
                )
            )
        assert caught.value.code == 132001

    async def test_template_parameter_mismatch(
        self, sim: httpx.AsyncClient, adapter: WhatsAppAdapter
    ) -> None:
        with pytest.raises(ChannelPermanentError) as caught:
            await adapter.send(
                OutboundMessage(
                    to=ANA["wa_id"],
                    type=OutboundType.template,
                    template=Template(name="order_update", language="en_US"),
                    idempotency_key="t",
                )
            )
        assert caught.value.code == 132000

    async def test_unknown_recipient(self, sim: httpx.AsyncClient, adapter: WhatsAppAdapter) -> None:
        with pytest.raises(ChannelPermanentError) as caught:
            await adapter.send(
                OutboundMessage(
                    to="15550000000",
                    type=OutboundType.template,
                    template=Template(name="hello_world", language="en_US"),
                    idempotency_key="u",
                )
            )
        assert caught.value.code == 131026

    async def test_bad_token(self, sim: httpx.AsyncClient, sandbox_url: str) -> None:
        context = AccountContext(
            account_id="a",
            external_id=NUMBER,
            api_base_url=sandbox_url,
            config={"phone_number_id": NUMBER, "business_account_id": WABA},
            secrets={"access_token": "expired", "app_secret": "s", "verify_token": "v"},
        )
        async with httpx.AsyncClient() as http:
            with pytest.raises(ChannelPermanentError, match="new system-user token") as caught:
                await WhatsAppAdapter(context, http, NoTokens()).send(text(ANA["wa_id"], "x", "k"))
        assert caught.value.code == 190

    async def test_throughput_limit(self, sim: httpx.AsyncClient, adapter: WhatsAppAdapter) -> None:
        await user_says(sim, ANA, text="hi")
        await sim.post(f"/_sandbox/accounts/{WABA}/limits", json={"rate_per_s": 1})
        await adapter.send(text(ANA["wa_id"], "1", "r1"))
        with pytest.raises(ChannelRetriableError) as caught:
            await adapter.send(text(ANA["wa_id"], "2", "r2"))
        assert (caught.value.code, caught.value.retry_after_s) == (130429, 1.0)

    async def test_pair_rate_limit(self, sim: httpx.AsyncClient, adapter: WhatsAppAdapter) -> None:
        await user_says(sim, ANA, text="hi")
        await sim.post(f"/_sandbox/accounts/{WABA}/limits", json={"pair_interval_s": 600})
        await adapter.send(text(ANA["wa_id"], "1", "p1"))
        with pytest.raises(ChannelRetriableError) as caught:
            await adapter.send(text(ANA["wa_id"], "2", "p2"))
        assert caught.value.code == 131056

    async def test_messaging_limit_is_a_quota(self, sim: httpx.AsyncClient, adapter: WhatsAppAdapter) -> None:
        await sim.post(f"/_sandbox/accounts/{WABA}/limits", json={"messaging_limit": 1})
        hello = Template(name="hello_world", language="en_US")
        await adapter.send(
            OutboundMessage(
                to=LEGACY["wa_id"], type=OutboundType.template, template=hello, idempotency_key="q1"
            )
        )
        await adapter.send(
            OutboundMessage(
                to=LEGACY["wa_id"], type=OutboundType.template, template=hello, idempotency_key="q2"
            )
        )
        with pytest.raises(ChannelQuotaExceededError) as caught:
            await adapter.send(
                OutboundMessage(
                    to=ANA["wa_id"], type=OutboundType.template, template=hello, idempotency_key="q3"
                )
            )
        assert caught.value.reset_at is not None

    @pytest.mark.parametrize(
        ("fault", "outcome"),
        [
            ({"code": 131000}, ChannelRetriableError),
            ({"code": 131016}, ChannelRetriableError),
            ({"code": 80007}, ChannelRetriableError),
            ({"http_status": 502}, ChannelRetriableError),
            ({"code": 131048}, ChannelQuotaExceededError),
            ({"code": 131051}, ChannelPermanentError),
        ],
    )
    async def test_injected_faults(
        self,
        sim: httpx.AsyncClient,
        adapter: WhatsAppAdapter,
        fault: dict[str, Any],
        outcome: type[Exception],
    ) -> None:
        await user_says(sim, ANA, text="hi")
        await sim.post(f"/_sandbox/accounts/{WABA}/limits", json={"faults": [{"count": 1, **fault}]})
        with pytest.raises(outcome):
            await adapter.send(text(ANA["wa_id"], "x", "f1"))
        await adapter.send(text(ANA["wa_id"], "x", "f1"))  # the fault was used up
        assert [r["duplicate"] for r in await record(sim)] == [False]

    async def test_unreachable_platform(self) -> None:
        context = AccountContext(
            account_id="a",
            external_id=NUMBER,
            api_base_url="http://127.0.0.1:9",
            config={"phone_number_id": NUMBER},
            secrets={"access_token": "t", "app_secret": "s", "verify_token": "v"},
        )
        async with httpx.AsyncClient() as http, aiohttp.ClientSession() as session:
            with pytest.raises(ChannelRetriableError, match="unreachable"):
                await WhatsAppAdapter(context, http, NoTokens()).send(text("1", "x", "k"))
            through_session = WhatsAppAdapter(context, http, NoTokens())
            through_session.use_session(session)
            with pytest.raises(ChannelRetriableError, match="unreachable"):
                await through_session.send(text("1", "x", "k"))

    async def test_a_send_that_times_out_is_retried(
        self, sim: httpx.AsyncClient, adapter: WhatsAppAdapter, sandbox_url: str
    ) -> None:
        await user_says(sim, ANA, text="hi")
        await sim.post(f"/_sandbox/accounts/{WABA}/limits", json={"faults": [{"count": 1, "delay_s": 3}]})
        adapter.client._timeout = 0.5
        adapter.client._aio_timeout = aiohttp.ClientTimeout(total=0.5)
        with pytest.raises(ChannelRetriableError, match="unreachable"):
            await adapter.send(text(ANA["wa_id"], "slow", "t1"))


class TestWebhooksBack:
    async def test_status_webhooks_are_signed_and_carry_the_key(
        self, sim: httpx.AsyncClient, adapter: WhatsAppAdapter, receiver: WebhookReceiver
    ) -> None:
        await user_says(sim, ANA, text="hi")
        result = await adapter.send(text(ANA["wa_id"], "hello", "status-key"))
        await sim.post("/_sandbox/idle")
        statuses = [e for e in receiver.events if e.kind is InboundKind.status]
        assert [e.type for e in statuses] == ["sent", "delivered", "read"]
        assert {e.platform_message_id for e in statuses} == {result.platform_message_id}
        assert {e.data["idempotency_key"] for e in statuses} == {"status-key"}
        assert statuses[0].sender.id == ANA["bsuid"]
        assert all(r.get("answer") == 200 for r in receiver.requests)

    async def test_mark_read(self, sim: httpx.AsyncClient, adapter: WhatsAppAdapter) -> None:
        inbound = await user_says(sim, ANA, text="hi")
        assert await adapter.mark_read(inbound["wamid"], typing=True) is True
        chat = (await sim.get(f"/_sandbox/accounts/{WABA}/users/{ANA['wa_id']}/conversation")).json()
        assert chat["items"][0]["status"] == "read"

    async def test_inbound_media_download(
        self, sim: httpx.AsyncClient, adapter: WhatsAppAdapter, receiver: WebhookReceiver
    ) -> None:
        await user_says(sim, ANA, type="image", caption="broken item")
        event = receiver.events[-1]
        assert event.media is not None and event.media.media_id is not None
        info, content = await adapter.client.fetch_media(event.media.media_id)
        assert content.startswith(b"\x89PNG")
        assert info.sha256 == hashlib.sha256(content).hexdigest()
        assert info.file_size == len(content)
        assert event.text == "broken item"


class TestAccountApis:
    async def test_senders(self, sim: httpx.AsyncClient, adapter: WhatsAppAdapter) -> None:
        numbers = await adapter.senders()
        assert [n["id"] for n in numbers] == [NUMBER, SECOND_NUMBER]
        assert numbers[0]["verified_name"] == "Parley Shop"

    async def test_templates_across_pages(self, sim: httpx.AsyncClient, adapter: WhatsAppAdapter) -> None:
        for i in range(30):
            await sim.post(
                f"/_sandbox/accounts/{WABA}/templates",
                json={
                    "name": f"bulk_{i}",
                    "language": "en_US",
                    "category": "UTILITY",
                    "components": [{"type": "BODY", "text": "Hi"}],
                },
            )
        names = {t["name"] for t in await adapter.client.list_templates(WABA, page_size=7)}
        assert {"hello_world", "order_update", "bulk_0", "bulk_29"} <= names
        assert len(names) == 33
        assert {t["name"] for t in await adapter.templates()} == names
