"""Callbacks of the adapter: URL verification, signatures per mode, passive replies; config; errcodes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from defusedxml.ElementTree import fromstring
from pydantic import ValidationError

from parley.channels.base import (
    Article,
    ChannelPermanentError,
    ChannelQuotaExceededError,
    ChannelRetriableError,
    ChannelWindowClosedError,
    Media,
    OutboundMessage,
    OutboundType,
    SignatureError,
)
from parley.channels.wechat.adapter import DAILY_QUOTAS, WeChatAdapter
from parley.channels.wechat.config import WeChatConfig
from parley.channels.wechat.crypto import MessageCrypto, sha1_signature
from parley.channels.wechat.errors import ERRCODES, error_for, next_beijing_midnight
from parley.channels.wechat.xml import build_xml, parse_body
from tests.channels.wechat.helpers import AES_KEY, TOKEN, adapter_for, context, webhook

APP_ID = "wx49f0ab532d5d035a"
TS, NONCE = "1714112445", "415670741"
INBOUND = {
    "ToUserName": "gh_0123456789ab",
    "FromUserName": "o6_bmjrPTlm6_2sgVt7hMZOPfL2M",
    "CreateTime": 1714112445,
    "MsgType": "text",
    "Content": "你好",
    "MsgId": 24600718068646123,
}


def signed_query(*, encrypt: str | None = None, token: str = TOKEN, app_id: str = APP_ID) -> dict[str, str]:
    query = {"signature": sha1_signature(token, TS, NONCE), "timestamp": TS, "nonce": NONCE, "openid": "o6"}
    if encrypt is not None:
        crypto = MessageCrypto(token, AES_KEY, app_id)
        query |= {"encrypt_type": "aes", "msg_signature": crypto.sign(TS, NONCE, encrypt)}
    return query


def encrypted_push(fields: dict[str, object], *, mode: str = "safe", app_id: str = APP_ID):
    plain = build_xml(fields)
    encrypt = MessageCrypto(TOKEN, AES_KEY, app_id).encrypt(plain.encode())
    if mode == "compatible":
        body = build_xml({**fields, "Encrypt": encrypt})
    else:
        body = build_xml({"ToUserName": fields["ToUserName"], "Encrypt": encrypt})
    return webhook(signed_query(encrypt=encrypt), body)


class TestHandshake:
    def test_tencent_example_echoes(self) -> None:
        adapter = adapter_for(context(APP_ID, token="AAAAA"))
        query = {
            "signature": "f464b24fc39322e44b38aa78f5edd27bd1441696",
            "timestamp": "1714036504",
            "nonce": "1514711492",
            "echostr": "abc123",
        }
        ack = adapter.handshake(webhook(query, method="GET"))
        assert (ack.body, ack.media_type, ack.status_code) == (b"abc123", "text/plain", 200)

    @pytest.mark.parametrize("mode", ["plain", "compatible", "safe"])
    def test_plain_signature_in_every_mode(self, mode: str) -> None:
        adapter = adapter_for(context(APP_ID, mode=mode))
        assert adapter.handshake(webhook(signed_query() | {"echostr": "e"}, method="GET")).body == b"e"

    def test_wrong_signature(self) -> None:
        adapter = adapter_for(context(APP_ID))
        with pytest.raises(SignatureError):
            adapter.handshake(webhook(signed_query(token="other") | {"echostr": "e"}, method="GET"))

    def test_missing_echostr(self) -> None:
        with pytest.raises(SignatureError):
            adapter_for(context(APP_ID)).handshake(webhook(signed_query(), method="GET"))


class TestVerify:
    def test_plain(self) -> None:
        adapter_for(context(APP_ID)).verify(webhook(signed_query(), build_xml(INBOUND)))

    def test_plain_wrong_signature(self) -> None:
        with pytest.raises(SignatureError):
            adapter_for(context(APP_ID)).verify(webhook(signed_query(token="nope"), build_xml(INBOUND)))

    @pytest.mark.parametrize("mode", ["compatible", "safe"])
    def test_encrypted_modes(self, mode: str) -> None:
        adapter = adapter_for(context(APP_ID, mode=mode))
        request = encrypted_push(INBOUND, mode=mode)
        adapter.verify(request)
        assert adapter.parse(request)[0].text == "你好"

    def test_msg_signature_must_cover_the_encrypt_value(self) -> None:
        request = encrypted_push(INBOUND)
        tampered = webhook({**request.query, "msg_signature": "0" * 40}, request.body)
        with pytest.raises(SignatureError, match="msg_signature"):
            adapter_for(context(APP_ID, mode="safe")).verify(tampered)

    def test_signature_alone_does_not_pass_an_encrypted_push(self) -> None:
        request = encrypted_push(INBOUND)
        query = {k: v for k, v in request.query.items() if k != "msg_signature"}
        with pytest.raises(SignatureError):
            adapter_for(context(APP_ID, mode="safe")).verify(webhook(query, request.body))

    @pytest.mark.parametrize("mode", ["compatible", "safe"])
    def test_unencrypted_push_refused_when_encrypting(self, mode: str) -> None:
        with pytest.raises(SignatureError, match="unencrypted"):
            adapter_for(context(APP_ID, mode=mode)).verify(webhook(signed_query(), build_xml(INBOUND)))

    def test_compatible_mode_trusts_only_the_decrypted_copy(self) -> None:
        request = encrypted_push(INBOUND, mode="compatible")
        forged = request.body.replace("你好".encode(), b"forged", 1)
        adapter = adapter_for(context(APP_ID, mode="compatible"))
        assert adapter.parse(webhook(request.query, forged))[0].text == "你好"

    def test_plain_account_accepts_an_encrypted_push(self) -> None:
        request = encrypted_push(INBOUND)
        adapter = adapter_for(context(APP_ID, mode="plain"))
        adapter.verify(request)
        assert adapter.parse(request)[0].text == "你好"


REPLIES = {
    "text": OutboundMessage(to="o6", type=OutboundType.text, text="收到 <b>&", idempotency_key="r"),
    "image": OutboundMessage(
        to="o6", type=OutboundType.image, media=Media(media_id="m1"), idempotency_key="r"
    ),
    "voice": OutboundMessage(
        to="o6", type=OutboundType.voice, media=Media(media_id="m2"), idempotency_key="r"
    ),
    "video": OutboundMessage(
        to="o6",
        type=OutboundType.video,
        media=Media(media_id="m3"),
        title="T",
        description="D",
        idempotency_key="r",
    ),
    "music": OutboundMessage(
        to="o6",
        type=OutboundType.music,
        media=Media(thumb_media_id="th"),
        title="歌",
        music_url="http://m/1.mp3",
        hq_music_url="http://m/hq.mp3",
        idempotency_key="r",
    ),
    "news": OutboundMessage(
        to="o6",
        type=OutboundType.news,
        articles=[Article(title="A1", description="d", url="http://a/1", picurl="http://p/1")],
        idempotency_key="r",
    ),
}

EXPECTED_REPLY: dict[str, dict[str, object]] = {
    "text": {"Content": "收到 <b>&"},
    "image": {"Image": {"MediaId": "m1"}},
    "voice": {"Voice": {"MediaId": "m2"}},
    "video": {"Video": {"MediaId": "m3", "Title": "T", "Description": "D"}},
    "music": {
        "Music": {
            "Title": "歌",
            "MusicUrl": "http://m/1.mp3",
            "HQMusicUrl": "http://m/hq.mp3",
            "ThumbMediaId": "th",
        }
    },
    "news": {
        "ArticleCount": "1",
        "Articles": {
            "item": {"Title": "A1", "Description": "d", "PicUrl": "http://p/1", "Url": "http://a/1"}
        },
    },
}


def _check_reply(tree: dict[str, object], kind: str) -> None:
    assert tree["ToUserName"] == INBOUND["FromUserName"]
    assert tree["FromUserName"] == INBOUND["ToUserName"]
    assert str(tree["CreateTime"]).isdigit()
    assert tree["MsgType"] == kind
    for key, value in EXPECTED_REPLY[kind].items():
        assert tree[key] == value


class TestAcknowledge:
    def test_no_reply_is_success(self) -> None:
        ack = adapter_for(context(APP_ID)).acknowledge(webhook(signed_query(), build_xml(INBOUND)))
        assert (ack.body, ack.status_code) == (b"success", 200)

    @pytest.mark.parametrize("kind", sorted(REPLIES))
    def test_plain_reply(self, kind: str) -> None:
        adapter = adapter_for(context(APP_ID))
        ack = adapter.acknowledge(webhook(signed_query(), build_xml(INBOUND)), REPLIES[kind])
        assert ack.media_type == "text/xml"
        _check_reply(parse_body(ack.body), kind)

    @pytest.mark.parametrize("kind", sorted(REPLIES))
    @pytest.mark.parametrize("mode", ["compatible", "safe"])
    def test_encrypted_reply_round_trips(self, kind: str, mode: str) -> None:
        adapter = adapter_for(context(APP_ID, mode=mode))
        ack = adapter.acknowledge(encrypted_push(INBOUND, mode=mode), REPLIES[kind])
        envelope = parse_body(ack.body)
        assert set(envelope) == {"Encrypt", "MsgSignature", "TimeStamp", "Nonce"}
        assert envelope["Nonce"] == NONCE
        crypto = MessageCrypto(TOKEN, AES_KEY, APP_ID)
        assert crypto.check(
            envelope["TimeStamp"], envelope["Nonce"], envelope["Encrypt"], envelope["MsgSignature"]
        )
        _check_reply(parse_body(crypto.decrypt(envelope["Encrypt"])), kind)

    def test_reply_xml_uses_cdata_and_bare_numbers(self) -> None:
        ack = adapter_for(context(APP_ID)).acknowledge(
            webhook(signed_query(), build_xml(INBOUND)), REPLIES["text"]
        )
        text = ack.body.decode()
        assert "<Content><![CDATA[收到 <b>&]]></Content>" in text
        assert fromstring(ack.body).findtext("CreateTime").isdigit()
        assert "<CreateTime><![CDATA[" not in text

    def test_news_reply_to_a_message_is_cut_to_one_article(self) -> None:
        many = REPLIES["news"].model_copy(update={"articles": [Article(title=f"A{i}") for i in range(10)]})
        adapter = adapter_for(context(APP_ID))
        to_message = parse_body(adapter.acknowledge(webhook(signed_query(), build_xml(INBOUND)), many).body)
        assert to_message["ArticleCount"] == "1"
        event = {**INBOUND, "MsgType": "event", "Event": "subscribe"}
        del event["Content"], event["MsgId"]
        to_event = parse_body(adapter.acknowledge(webhook(signed_query(), build_xml(event)), many).body)
        assert to_event["ArticleCount"] == "8"
        assert len(to_event["Articles"]["item"]) == 8

    def test_media_reply_needs_a_media_id(self) -> None:
        message = OutboundMessage(to="o6", type=OutboundType.image, idempotency_key="r")
        with pytest.raises(ChannelPermanentError, match="media_id"):
            adapter_for(context(APP_ID)).acknowledge(webhook(signed_query(), build_xml(INBOUND)), message)

    def test_json_push_gets_a_json_reply(self) -> None:
        body = '{"ToUserName":"gh_1","FromUserName":"o6","CreateTime":1,"MsgType":"text","Content":"hi","MsgId":5}'
        ack = adapter_for(context(APP_ID)).acknowledge(webhook(signed_query(), body), REPLIES["text"])
        assert ack.media_type == "application/json"
        assert b'"Content":"\xe6\x94\xb6\xe5\x88\xb0 <b>&"' in ack.body


class TestConfig:
    def _config(self, **overrides: object) -> WeChatConfig:
        fields: dict[str, object] = {
            "app_id": APP_ID,
            "app_secret": "s" * 32,
            "token": TOKEN,
            "encoding_aes_key": AES_KEY,
            "encryption_mode": "safe",
            "original_id": "gh_0123456789ab",
        }
        return WeChatConfig.model_validate(fields | overrides)

    def test_valid(self) -> None:
        config = self._config()
        assert config.encoding_aes_key is not None
        assert "kWx" not in repr(config)

    @pytest.mark.parametrize(
        "overrides",
        [
            {"app_id": "wx123"},
            {"token": "a"},
            {"token": "bad token!"},
            {"encoding_aes_key": "A" * 42},
            {"encoding_aes_key": None},
            {"encryption_mode": "secret"},
            {"original_id": "nope"},
            {"unknown": 1},
        ],
    )
    def test_invalid(self, overrides: dict[str, object]) -> None:
        with pytest.raises(ValidationError):
            self._config(**overrides)

    def test_plain_mode_needs_no_aes_key(self) -> None:
        assert self._config(encryption_mode="plain", encoding_aes_key=None).encoding_aes_key is None

    def test_capabilities(self) -> None:
        caps = WeChatAdapter.capabilities
        assert (caps.reply_window_hours, caps.passive_reply, caps.webhook_deadline_s) == (48, True, 5.0)
        assert caps.template_only_outside_window
        assert DAILY_QUOTAS["custom_send"] == 500_000
        assert DAILY_QUOTAS["user_get"] == 500
        assert WeChatAdapter.config_schema is WeChatConfig


class TestErrcodes:
    @pytest.mark.parametrize(
        ("code", "error"),
        [
            (-1, ChannelRetriableError),
            (45011, ChannelRetriableError),
            (45009, ChannelQuotaExceededError),
            (45015, ChannelWindowClosedError),
            (45047, ChannelWindowClosedError),
            (40003, ChannelPermanentError),
            (43004, ChannelPermanentError),
            (40001, ChannelPermanentError),
            (47003, ChannelPermanentError),
            (99999, ChannelPermanentError),
        ],
    )
    def test_outcome(self, code: int, error: type[Exception]) -> None:
        exc = error_for(code, "msg rid: 1")
        assert type(exc) is error
        assert exc.code == code

    def test_every_dossier_code_is_in_the_table(self) -> None:
        dossier = {
            -1,
            40001,
            40014,
            42001,
            40003,
            40164,
            43004,
            43019,
            45009,
            45011,
            45015,
            45047,
            45028,
            46003,
            47003,
            48001,
            40029,
            40163,
        }
        assert dossier <= set(ERRCODES)

    def test_quota_resets_at_beijing_midnight(self) -> None:
        now = datetime(2026, 3, 1, 15, 30, tzinfo=UTC)  # 23:30 in Beijing
        assert next_beijing_midnight(now) == datetime(2026, 3, 1, 16, 0, tzinfo=UTC)
        exc = error_for(45009, "reach max api daily quota limit", now=now)
        assert isinstance(exc, ChannelQuotaExceededError)
        assert exc.reset_at == datetime(2026, 3, 1, 16, 0, tzinfo=UTC)

    def test_retriable_has_a_delay(self) -> None:
        exc = error_for(-1, "system error")
        assert isinstance(exc, ChannelRetriableError)
        assert exc.retry_after_s


class TestOncePerRequest:
    """verify, parse and acknowledge of one request parse the body and decrypt it once between them."""

    def _count(self, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
        from parley.channels.wechat import adapter as module

        calls = {"parse": 0, "decrypt": 0}
        real_parse, real_decrypt = module.parse_body, MessageCrypto.decrypt

        def parse(body: bytes):  # type: ignore[no-untyped-def]
            calls["parse"] += 1
            return real_parse(body)

        def decrypt(self, encrypt: str):  # type: ignore[no-untyped-def]
            calls["decrypt"] += 1
            return real_decrypt(self, encrypt)

        monkeypatch.setattr(module, "parse_body", parse)
        monkeypatch.setattr(MessageCrypto, "decrypt", decrypt)
        return calls

    @pytest.mark.parametrize("mode", ["compatible", "safe"])
    def test_encrypted_push(self, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
        calls = self._count(monkeypatch)
        adapter = adapter_for(context(APP_ID, mode=mode))
        request = encrypted_push(INBOUND, mode=mode)
        adapter.verify(request)
        events = adapter.parse(request)
        ack = adapter.acknowledge(request, REPLIES["text"])
        assert events[0].text == "你好" and ack.media_type == "text/xml"
        assert calls == {"parse": 2, "decrypt": 1}  # the envelope and the inner push, each once
        # Another request is parsed afresh.
        adapter.parse(encrypted_push(INBOUND, mode=mode))
        assert calls == {"parse": 4, "decrypt": 2}

    def test_plain_push(self, monkeypatch: pytest.MonkeyPatch) -> None:
        calls = self._count(monkeypatch)
        adapter = adapter_for(context(APP_ID))
        request = webhook(signed_query(), build_xml(INBOUND))
        adapter.verify(request)
        adapter.parse(request)
        adapter.acknowledge(request, REPLIES["text"])
        assert calls == {"parse": 1, "decrypt": 0}

    def test_another_key_opens_the_request_again(self) -> None:
        request = encrypted_push(INBOUND)
        assert adapter_for(context(APP_ID, mode="safe")).parse(request)[0].text == "你好"
        # Credentials rotated: the same request under another AES key must not reuse the opened copy.
        other = adapter_for(context(APP_ID, mode="safe", aes_key="b" * 43))
        with pytest.raises(SignatureError):
            other.parse(request)
        assert adapter_for(context(APP_ID, mode="safe")).parse(request)[0].text == "你好"

    def test_a_refusal_is_raised_every_time(self) -> None:
        from parley.channels.base import MalformedPayloadError

        adapter = adapter_for(context(APP_ID))
        request = webhook(signed_query(), b"<xml><ToUserName>gh</xml>")
        for _ in range(2):
            with pytest.raises(MalformedPayloadError, match="invalid XML"):
                adapter.verify(request)
            with pytest.raises(MalformedPayloadError, match="invalid XML"):
                adapter.parse(request)
        assert request.memo == {}
