"""Handshake, signature, acknowledgement: the webhook-side contract (PROTOCOLS.md 2.1, 2.2)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from parley.channels.base import (
    AccountContext,
    MalformedPayloadError,
    OutboundMessage,
    OutboundType,
    SignatureError,
    WebhookRequest,
)
from parley.channels.whatsapp import WhatsAppAdapter, WhatsAppConfig, sign
from tests.channels.whatsapp.whatsapp_support import APP_SECRET, NUMBER, TOKEN, VERIFY_TOKEN, NoTokens, load


def get(query: dict[str, str]) -> WebhookRequest:
    return WebhookRequest(method="GET", query=query, headers={}, body=b"")


def post(body: bytes, signature: str | None) -> WebhookRequest:
    headers = {"content-type": "application/json"}
    if signature is not None:
        headers["x-hub-signature-256"] = signature
    return WebhookRequest(method="POST", query={}, headers=headers, body=body)


class TestHandshake:
    def test_echoes_the_challenge_verbatim(self, offline_adapter: WhatsAppAdapter) -> None:
        ack = offline_adapter.handshake(
            get({"hub.mode": "subscribe", "hub.challenge": "1158201444", "hub.verify_token": VERIFY_TOKEN})
        )
        assert (ack.status_code, ack.body, ack.media_type) == (200, b"1158201444", "text/plain")

    def test_refuses_a_wrong_token(self, offline_adapter: WhatsAppAdapter) -> None:
        with pytest.raises(SignatureError):
            offline_adapter.handshake(
                get({"hub.mode": "subscribe", "hub.challenge": "1", "hub.verify_token": "nope"})
            )

    def test_refuses_a_wrong_mode(self, offline_adapter: WhatsAppAdapter) -> None:
        with pytest.raises(SignatureError):
            offline_adapter.handshake(
                get({"hub.mode": "unsubscribe", "hub.challenge": "1", "hub.verify_token": VERIFY_TOKEN})
            )

    def test_missing_challenge_is_a_bad_request(self, offline_adapter: WhatsAppAdapter) -> None:
        with pytest.raises(MalformedPayloadError):
            offline_adapter.handshake(get({"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN}))

    def test_no_configured_token_refuses_everything(self) -> None:
        context = AccountContext(
            account_id="a",
            external_id=NUMBER,
            api_base_url="http://x",
            config={},
            secrets={"app_secret": "s"},
        )
        import httpx

        adapter = WhatsAppAdapter(context, httpx.AsyncClient(), NoTokens())
        with pytest.raises(SignatureError):
            adapter.handshake(get({"hub.mode": "subscribe", "hub.challenge": "1", "hub.verify_token": ""}))


class TestVerify:
    def test_reproduces_the_pywa_vector(self) -> None:
        vector = load("hmac_test_vector.json")
        body = vector["raw_body"].encode()
        assert sign(vector["app_secret"], body) == vector["x_hub_signature_256"]
        context = AccountContext(
            account_id="a",
            external_id="277321005464405",
            api_base_url="http://x",
            config={},
            secrets={"app_secret": vector["app_secret"], "verify_token": "v", "access_token": "t"},
        )
        import httpx

        adapter = WhatsAppAdapter(context, httpx.AsyncClient(), NoTokens())
        adapter.verify(post(body, vector["x_hub_signature_256"]))

    def test_accepts_our_signature(self, offline_adapter: WhatsAppAdapter) -> None:
        body = b'{"object":"whatsapp_business_account","entry":[]}'
        digest = hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
        offline_adapter.verify(post(body, f"sha256={digest}"))

    def test_missing_header(self, offline_adapter: WhatsAppAdapter) -> None:
        with pytest.raises(SignatureError) as caught:
            offline_adapter.verify(post(b"{}", None))
        assert caught.value.code == 401

    @pytest.mark.parametrize(
        "signature",
        [
            "sha256=" + "0" * 64,
            hmac.new(APP_SECRET.encode(), b"{}", hashlib.sha256).hexdigest(),  # bare hex: prefix is required
            "sha1=" + hmac.new(APP_SECRET.encode(), b"{}", hashlib.sha1).hexdigest(),
            "sha256=" + hmac.new(b"other-secret", b"{}", hashlib.sha256).hexdigest(),
            "",
        ],
    )
    def test_rejects_bad_signatures(self, offline_adapter: WhatsAppAdapter, signature: str) -> None:
        with pytest.raises(SignatureError):
            offline_adapter.verify(post(b"{}", signature))

    def test_signature_is_over_raw_bytes(self, offline_adapter: WhatsAppAdapter) -> None:
        # Meta signs the escaped-unicode bytes it sends; the decoded text signs differently.
        escaped = b'{"text":"\\u00e9"}'
        decoded = '{"text":"é"}'.encode()
        offline_adapter.verify(post(escaped, sign(APP_SECRET, escaped)))
        with pytest.raises(SignatureError):
            offline_adapter.verify(post(escaped, sign(APP_SECRET, decoded)))


class TestAcknowledge:
    def test_empty_200(self, offline_adapter: WhatsAppAdapter) -> None:
        ack = offline_adapter.acknowledge(post(b"{}", None))
        assert (ack.status_code, ack.body) == (200, b"")

    def test_passive_reply_is_a_programming_error(self, offline_adapter: WhatsAppAdapter) -> None:
        reply = OutboundMessage(to="1", type=OutboundType.text, text="hi", idempotency_key="k")
        with pytest.raises(ValueError, match="no passive reply"):
            offline_adapter.acknowledge(post(b"{}", None), reply)


class TestConfig:
    def test_valid(self) -> None:
        config = WhatsAppConfig(
            phone_number_id=NUMBER,
            business_account_id="1",
            access_token=TOKEN,
            app_secret=APP_SECRET,
            verify_token=VERIFY_TOKEN,
        )
        assert config.api_version == "v25.0"
        assert config.access_token.get_secret_value() == TOKEN
        assert TOKEN not in repr(config)

    @pytest.mark.parametrize("version", ["25.0", "v16.0", "v25.1", "latest"])
    def test_rejects_bad_versions(self, version: str) -> None:
        with pytest.raises(ValueError, match=r"api_version|Graph API version|pattern"):
            WhatsAppConfig(
                phone_number_id=NUMBER,
                business_account_id="1",
                access_token=TOKEN,
                app_secret=APP_SECRET,
                verify_token=VERIFY_TOKEN,
                api_version=version,
            )

    def test_capabilities(self) -> None:
        caps = WhatsAppAdapter.capabilities
        assert caps.reply_window_hours == 24
        assert caps.template_only_outside_window is True
        assert caps.passive_reply is False
        assert caps.default_rate_per_s == 80
        assert caps.daily_quotas["messaging_limit_unique_users"] == 250
