"""Every wechatpy sample parses to its normalized event; hostile and broken bodies are refused."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from parley.channels.base import InboundKind, MalformedPayloadError, SignatureError
from parley.channels.wechat.crypto import MessageCrypto, sha1_signature
from parley.channels.wechat.xml import build_xml, parse_body
from tests.channels.wechat.helpers import AES_KEY, PAYLOADS, TOKEN, adapter_for, context, webhook

APP_ID = "wx49f0ab532d5d035a"

# fixture file → (kind, normalized type)
EXPECTED = {
    "events__click_event.xml": ("event", "menu_click"),
    "events__kf_close_session_event.xml": ("event", "kf_session_close"),
    "events__kf_create_session_event.xml": ("event", "kf_session_create"),
    "events__kf_switch_session_event.xml": ("event", "kf_session_switch"),
    "events__location_event.xml": ("event", "location_report"),
    "events__location_select_event.xml": ("event", "location_select"),
    "events__mass_send_job_finish_event.xml": ("event", "mass_send_finished"),
    "events__pic_photo_or_album_event.xml": ("event", "menu_pic"),
    "events__pic_sysphoto_event.xml": ("event", "menu_pic"),
    "events__pic_wechat_event.xml": ("event", "menu_pic"),
    "events__scan_code_push_event.xml": ("event", "scancode"),
    "events__scan_code_waitmsg_event.xml": ("event", "scancode"),
    "events__scan_event.xml": ("event", "scan"),
    "events__subscribe_event.xml": ("event", "subscribe"),
    "events__subscribe_scan_event.xml": ("event", "subscribe"),
    "events__template_send_job_finish_event.xml": ("event", "template_send_finished"),
    "events__template_subscribe_msg_change_event.xml": ("event", "subscribe_msg_change"),
    "events__template_subscribe_msg_popup_event.xml": ("event", "subscribe_msg_popup"),
    "events__template_subscribe_msg_sent_event.xml": ("event", "subscribe_msg_sent"),
    "events__unsubscribe_event.xml": ("event", "unsubscribe"),
    "events__view_event.xml": ("event", "menu_view"),
    "parser__parse_click_event.xml": ("event", "menu_click"),
    "parser__parse_image_message.xml": ("message", "image"),
    "parser__parse_link_message.xml": ("message", "link"),
    "parser__parse_location_event.xml": ("event", "location_report"),
    "parser__parse_location_message.xml": ("message", "location"),
    "parser__parse_scan_event.xml": ("event", "scan"),
    "parser__parse_subscribe_event.xml": ("event", "subscribe"),
    "parser__parse_subscribe_scan_event.xml": ("event", "subscribe"),
    "parser__parse_text_message.xml": ("message", "text"),
    "parser__parse_unknown_message.xml": ("message", "unsupported"),
    "parser__parse_video_message.xml": ("message", "video"),
    "parser__parse_view_event.xml": ("event", "menu_view"),
    "parser__parse_voice_message.xml": ("message", "voice"),
}


def _plain(body: bytes | str):
    adapter = adapter_for(context(APP_ID, mode="plain"))
    return adapter.parse(webhook({}, body))


def _one(body: bytes | str):
    events = _plain(body)
    assert len(events) == 1
    return events[0]


def _sample(name: str) -> bytes:
    return (PAYLOADS / "xml" / name).read_bytes()


class TestFixtures:
    def test_every_fixture_is_covered(self) -> None:
        assert sorted(p.name for p in (PAYLOADS / "xml").glob("*.xml")) == sorted(EXPECTED)

    @pytest.mark.parametrize(("name", "expected"), sorted(EXPECTED.items()))
    def test_fixture_parses(self, name: str, expected: tuple[str, str]) -> None:
        event = _one(_sample(name))
        assert (event.kind.value, event.type) == expected
        assert event.sender.id
        assert event.dedupe_key.startswith("msg:" if expected[0] == "message" else "evt:")

    def test_text(self) -> None:
        event = _one(_sample("parser__parse_text_message.xml"))
        assert event.kind is InboundKind.message
        assert event.text == "this is a test"
        assert event.platform_message_id == "1234567890123456"
        assert event.dedupe_key == "msg:1234567890123456"
        assert event.account_external_id == "toUser"
        assert event.sender.id == "fromUser"
        assert event.occurred_at == datetime.fromtimestamp(1348831860, UTC)

    def test_image(self) -> None:
        event = _one(_sample("parser__parse_image_message.xml"))
        assert event.media is not None
        assert (event.media.media_id, event.media.url) == ("media_id", "this is a url")

    def test_voice_with_recognition(self) -> None:
        event = _one(_sample("parser__parse_voice_message.xml"))
        assert event.media is not None
        assert event.media.format == "Format"
        assert event.recognition is None
        body = _sample("parser__parse_voice_message.xml").replace(
            b"</xml>", b"<Recognition><![CDATA[\xe4\xbd\xa0\xe5\xa5\xbd]]></Recognition></xml>"
        )
        assert _one(body).recognition == "你好"

    def test_video(self) -> None:
        event = _one(_sample("parser__parse_video_message.xml"))
        assert event.media is not None
        assert event.media.thumb_media_id == "thumb_media_id"

    def test_location(self) -> None:
        event = _one(_sample("parser__parse_location_message.xml"))
        assert event.location is not None
        assert (event.location.latitude, event.location.longitude) == (23.134521, 113.358803)
        assert event.location.precision == 20
        assert event.location.address == "位置信息"

    def test_link(self) -> None:
        event = _one(_sample("parser__parse_link_message.xml"))
        assert event.link is not None
        assert (event.link.title, event.link.url) == ("公众平台官网链接", "url")

    def test_unknown_message_is_kept_as_unsupported(self) -> None:
        event = _one(_sample("parser__parse_unknown_message.xml"))
        assert event.data["msg_type"] == "notsure"
        assert event.dedupe_key == "msg:1234567890123456"

    def test_subscribe_via_qr_strips_the_prefix(self) -> None:
        event = _one(_sample("events__subscribe_scan_event.xml"))
        assert event.data["scene"] == "123123"
        assert event.data["ticket"] == "TICKET"
        assert event.dedupe_key == "evt:FromUser:123456789:subscribe:qrscene_123123"

    def test_plain_subscribe_has_no_scene(self) -> None:
        event = _one(_sample("events__subscribe_event.xml"))
        assert "scene" not in event.data
        assert event.dedupe_key == "evt:FromUser:123456789:subscribe"

    def test_scan(self) -> None:
        event = _one(_sample("events__scan_event.xml"))
        assert (event.data["scene"], event.data["ticket"]) == ("SCENE_VALUE", "TICKET")

    def test_location_report(self) -> None:
        event = _one(_sample("events__location_event.xml"))
        assert event.location is not None
        assert (event.location.latitude, event.location.longitude, event.location.precision) == (
            23.137466,
            113.352425,
            119.38504,
        )

    def test_click_and_view(self) -> None:
        assert _one(_sample("events__click_event.xml")).data["event_key"] == "EVENTKEY"
        assert _one(_sample("events__view_event.xml")).data["url"] == "www.qq.com"

    def test_scancode(self) -> None:
        event = _one(_sample("events__scan_code_waitmsg_event.xml"))
        assert event.data | {"event": "scancode_waitmsg"} == event.data
        assert (event.data["mode"], event.data["scan_type"], event.data["scan_result"]) == (
            "waitmsg",
            "qrcode",
            "2",
        )

    def test_pictures(self) -> None:
        event = _one(_sample("events__pic_sysphoto_event.xml"))
        assert event.data["count"] == 1
        assert event.data["pic_md5"] == ["1b5f7c23b5bf75682a53e7b6d163e185"]
        assert event.data["source"] == "sysphoto"

    def test_location_select(self) -> None:
        event = _one(_sample("events__location_select_event.xml"))
        assert event.location is not None
        assert (event.location.latitude, event.location.longitude) == (23.0, 113.0)
        assert event.location.address == "广州市海珠区客村艺苑路 106号"

    def test_template_finished_is_a_status(self) -> None:
        event = _one(_sample("events__template_send_job_finish_event.xml"))
        assert event.status is not None
        assert (event.status.message_id, event.status.status) == ("200163836", "delivered")
        assert event.dedupe_key == "evt:fromuser:1395658920:templatesendjobfinish:200163836"
        failed = _sample("events__template_send_job_finish_event.xml").replace(
            b"success", b"failed:user block"
        )
        status = _one(failed).status
        assert status is not None
        assert (status.status, status.error_title) == ("failed", "failed:user block")

    def test_mass_send_finished(self) -> None:
        event = _one(_sample("events__mass_send_job_finish_event.xml"))
        assert event.data["msg_id"] == "1000001625"
        assert event.data["status"] == "err(30003)"
        assert event.data["total_count"] == 0

    def test_kf_sessions(self) -> None:
        assert _one(_sample("events__kf_create_session_event.xml")).data["kf_account"] == "test1@test"
        switch = _one(_sample("events__kf_switch_session_event.xml")).data
        assert (switch["from_kf_account"], switch["to_kf_account"]) == ("test1@test", "test2@test")

    def test_subscribe_message_lists(self) -> None:
        items = _one(_sample("events__template_subscribe_msg_popup_event.xml")).data["items"]
        assert [i["SubscribeStatusString"] for i in items] == ["accept", "reject"]
        sent = _one(_sample("events__template_subscribe_msg_sent_event.xml")).data["items"]
        assert sent[0]["MsgID"] == "1700827132819554304"


class TestTolerance:
    def test_event_names_are_case_insensitive(self) -> None:
        body = _sample("events__click_event.xml").replace(b"CLICK", b"click")
        assert _one(body).type == "menu_click"

    def test_bare_text_and_cdata_both_parse(self) -> None:
        body = (
            "<xml><ToUserName>gh_1</ToUserName><FromUserName>o1</FromUserName><CreateTime>1</CreateTime>"
            "<MsgType>text</MsgType><Content>a &amp; b</Content><MsgId>1</MsgId><Unknown>x</Unknown></xml>"
        )
        assert _one(body).text == "a & b"

    def test_64_bit_msg_id_is_kept_exactly(self) -> None:
        body = _sample("parser__parse_text_message.xml").replace(b"1234567890123456", b"24600718068646123457")
        assert _one(body).platform_message_id == "24600718068646123457"

    def test_unknown_event_is_kept_as_unsupported(self) -> None:
        body = _sample("events__click_event.xml").replace(b"CLICK", b"brand_new_event")
        event = _one(body)
        assert (event.kind.value, event.type, event.data["event"]) == (
            "event",
            "unsupported",
            "brand_new_event",
        )

    def test_long_view_url_keeps_the_key_short(self) -> None:
        body = _sample("events__view_event.xml").replace(b"www.qq.com", b"https://example.com/" + b"a" * 300)
        assert len(_one(body).dedupe_key) <= 255

    def test_json_envelope(self) -> None:
        body = '{"ToUserName":"gh_1","FromUserName":"o1","CreateTime":1714112445,"MsgType":"text","Content":"hi","MsgId":7}'
        event = _one(body)
        assert (event.text, event.dedupe_key) == ("hi", "msg:7")


HOSTILE = {
    "billion laughs": (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">'
        '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;">]><xml><Content>&lol3;</Content></xml>'
    ),
    "external entity": (
        '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        "<xml><ToUserName>&xxe;</ToUserName></xml>"
    ),
    "dtd": '<?xml version="1.0"?><!DOCTYPE xml SYSTEM "http://example.com/x.dtd"><xml><a>1</a></xml>',
    "parameter entity": (
        '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY % p SYSTEM "http://example.com/p.dtd"> %p;]><xml/>'
    ),
    "unclosed": "<xml><ToUserName>gh</xml>",
    "not xml": "hello there",
    "wrong root": "<html><body/></html>",
    "empty": "",
    "empty root": "<xml></xml>",
    "json array": "[1, 2]",
    "broken json": '{"ToUserName": ',
}

BASE = {
    "ToUserName": "gh_1",
    "FromUserName": "o1",
    "CreateTime": 1700000000,
    "MsgType": "text",
    "Content": "x",
    "MsgId": 1,
}


class TestHostile:
    @pytest.mark.parametrize("body", HOSTILE.values(), ids=HOSTILE.keys())
    def test_refused_as_malformed(self, body: str) -> None:
        with pytest.raises(MalformedPayloadError):
            _plain(body)

    def test_oversized_body(self) -> None:
        with pytest.raises(MalformedPayloadError, match="1 MB"):
            parse_body(b"<xml>" + b"a" * (1024 * 1024) + b"</xml>")

    @pytest.mark.parametrize(
        ("change", "message"),
        [
            ({"CreateTime": "yesterday"}, "CreateTime"),
            ({"CreateTime": None}, "CreateTime"),
            ({"FromUserName": None}, "FromUserName"),
            ({"ToUserName": ""}, "ToUserName"),
            ({"MsgType": None}, "MsgType"),
            ({"MsgId": None}, "MsgId"),
            ({"Content": None}, "Content"),
            ({"Content": {"b": "nested"}}, "Content"),
            ({"MsgType": "location", "Location_X": "north", "Location_Y": "1"}, "Location_X"),
            ({"MsgType": "image"}, "MediaId"),
            ({"MsgType": "link"}, "Url"),
            ({"MsgType": "event", "Event": None}, "Event"),
            ({"CreateTime": 10**20}, "CreateTime"),
        ],
    )
    def test_wrong_types_and_missing_elements(self, change: dict[str, object], message: str) -> None:
        fields = {k: v for k, v in ({**BASE, **change}).items() if v is not None}
        with pytest.raises(MalformedPayloadError, match=message):
            _plain(build_xml(fields))


class TestEncryptedParse:
    def _request(
        self, app_id: str, inner: str, *, mode: str = "safe", token: str = TOKEN
    ) -> tuple[dict[str, str], str]:
        crypto = MessageCrypto(token, AES_KEY, app_id)
        encrypt = crypto.encrypt(inner.encode())
        query = {
            "timestamp": "1714112445",
            "nonce": "415670741",
            "encrypt_type": "aes",
            "signature": sha1_signature(token, "1714112445", "415670741"),
            "msg_signature": crypto.sign("1714112445", "415670741", encrypt),
        }
        body = build_xml({"ToUserName": "gh_1", "Encrypt": encrypt})
        return query, body

    def test_safe_mode_decrypts(self) -> None:
        query, body = self._request(APP_ID, build_xml(BASE))
        adapter = adapter_for(context(APP_ID, mode="safe"))
        request = webhook(query, body)
        adapter.verify(request)
        assert adapter.parse(request)[0].text == "x"

    def test_wrong_appid_inside_the_ciphertext(self) -> None:
        query, body = self._request("wx0000000000000001", build_xml(BASE))
        adapter = adapter_for(context(APP_ID, mode="safe"))
        with pytest.raises(SignatureError, match="AppID"):
            adapter.parse(webhook(query, body))

    def test_garbage_ciphertext_is_malformed(self) -> None:
        adapter = adapter_for(context(APP_ID, mode="safe"))
        with pytest.raises(MalformedPayloadError):
            adapter.parse(webhook({"encrypt_type": "aes"}, "<xml><Encrypt>@@@</Encrypt></xml>"))
