"""Webhook body → InboundEvent (PROTOCOLS.md 2.2, 2.3, 2.9)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from parley.channels.base import (
    InboundEvent,
    InboundKind,
    MalformedPayloadError,
    UnsupportedEventTypeError,
)
from parley.channels.whatsapp.parse import parse_body
from tests.channels.whatsapp.whatsapp_support import PAYLOADS, load

FIXTURES = sorted(
    (path.name, variant)
    for path in PAYLOADS.glob("*.json")
    if path.name != "hmac_test_vector.json"
    for variant in json.loads(path.read_text())
)


def parse(document: Any) -> list[InboundEvent]:
    return parse_body(json.dumps(document).encode())


def one(name: str, variant: str) -> InboundEvent:
    events = parse(load(name)[variant])
    assert len(events) == 1
    return events[0]


class TestEveryFixture:
    @pytest.mark.parametrize(("name", "variant"), FIXTURES)
    def test_parses(self, name: str, variant: str) -> None:
        events = parse(load(name)[variant])
        assert events, "every fixture carries at least one thing"
        for event in events:
            assert event.dedupe_key
            assert event.sender.id
            assert event.occurred_at.tzinfo is not None
            if event.kind is InboundKind.status:
                assert event.status is not None
                assert event.type in {"sent", "delivered", "read", "failed"}

    def test_pywa_hmac_body_parses(self) -> None:
        vector = load("hmac_test_vector.json")
        [event] = parse_body(vector["raw_body"].encode())
        assert (event.type, event.text, event.account_external_id) == (
            "text",
            "Hey there! I am using PyWa.",
            "277321005464405",
        )
        assert event.sender.id == event.sender.phone == "972544401243"


class TestMessages:
    def test_text(self) -> None:
        event = one("message.json", "text")
        assert event.kind is InboundKind.message
        assert (event.type, event.text, event.platform_message_id) == ("text", "Body Text", "wamid.xyzxyz")
        assert event.dedupe_key == "msg:wamid.xyzxyz"
        assert event.account_external_id == "1122334455667"
        assert event.occurred_at == datetime.fromtimestamp(1697043223, tz=UTC)
        assert event.data["parent_user_id"] == "US.ENT.11815799212886844830"

    def test_sender_prefers_the_bsuid_and_keeps_the_phone(self) -> None:
        sender = one("message.json", "text").sender
        assert sender.id == sender.bsuid == "US.13491208655302741918"
        assert sender.phone == "972987654321"
        assert sender.display_name == "Test Name"

    def test_image(self) -> None:
        event = one("message.json", "media_with_url")
        assert event.type == "image"
        assert event.media is not None
        assert (event.media.media_id, event.media.mime_type, event.media.sha256) == (
            "65463453",
            "image/jpeg",
            "4654+8g=",
        )
        assert event.media.url is not None and event.media.url.startswith("https://lookaside.fbsbx.com/")

    def test_voice_and_audio(self) -> None:
        assert one("message.json", "voice").type == "voice"
        assert one("message.json", "audio").type == "audio"

    def test_document_is_a_file(self) -> None:
        event = one("message.json", "document")
        assert event.type == "file"
        assert event.media is not None
        assert (event.media.filename, event.media.caption, event.text) == (
            "filename.pdf",
            "caption",
            "caption",
        )
        assert event.data["forwarded"] is True

    def test_sticker(self) -> None:
        assert one("message.json", "animated_sticker").data["animated"] is True

    @pytest.mark.parametrize(
        ("variant", "emoji", "removed"),
        [("reaction", "😮", False), ("unreaction_empty", "", True), ("unreaction_no_emoji", "", True)],
    )
    def test_reactions(self, variant: str, emoji: str, removed: bool) -> None:
        event = one("message.json", variant)
        assert event.type == "reaction"
        assert event.reply_to == "wamid.yzxyzx="
        assert (event.data["emoji"], event.data["removed"]) == (emoji, removed)

    def test_location(self) -> None:
        event = one("message.json", "chosen_location")
        assert event.location is not None
        assert (event.location.latitude, event.location.longitude) == (37.4611978, -122.2164385)
        assert event.location.name == "Facebook HQ"
        assert event.data["url"].startswith("https://maps.google.com")

    def test_contacts(self) -> None:
        event = one("message.json", "contacts")
        assert event.type == "contacts"
        assert len(event.data["contacts"]) >= 2
        assert event.text is not None and "Chandler Bing" in event.text

    def test_reply_context(self) -> None:
        assert one("message.json", "reply").reply_to == "wamid.xyzxyz=="

    def test_referral(self) -> None:
        assert one("message.json", "referral").data["referral"]["ctwa_clid"] == "CTWA_CLID"

    def test_order(self) -> None:
        event = one("message.json", "order")
        assert event.type == "order"
        assert event.data["order"]["catalog_id"] == "354160437058781"

    @pytest.mark.parametrize(
        "variant", ["unsupported", "unsupported_with_type", "interactive_message_with_err"]
    )
    def test_unsupported_never_crashes(self, variant: str) -> None:
        event = one("message.json", variant)
        assert event.type == "unsupported"
        assert event.data["errors"][0]["code"] in {131051, 131000}

    def test_button_reply(self) -> None:
        event = one("callback_button.json", "button")
        assert (event.type, event.text, event.data["reply_id"]) == ("interactive", "title", "callback_data")
        assert event.data["interactive_type"] == "button_reply"
        assert event.reply_to == "wamid.xyzxyz"

    def test_list_reply(self) -> None:
        event = one("callback_selection.json", "description")
        assert (event.data["interactive_type"], event.data["reply_id"], event.data["description"]) == (
            "list_reply",
            "callback_data",
            "description",
        )

    def test_template_quick_reply(self) -> None:
        event = one("callback_button.json", "quick_reply_without_context")
        assert (event.type, event.text, event.data["payload"]) == ("button", "title", "callback_data")
        assert event.sender.bsuid == "US.13491208655302741918"

    def test_flow_reply(self) -> None:
        event = one("flow_completion.json", "completion")
        assert event.data["interactive_type"] == "nfm_reply"
        assert event.data["response"]["flow_token"] == "AQAAAAACS5FpgQ_cAAAAAD0QI3s."
        assert event.text == "Sent"


class TestNotMessages:
    def test_number_change_is_an_event(self) -> None:
        event = one("system.json", "phone_number_change")
        assert (event.kind, event.type) == (InboundKind.event, "number_changed")
        assert event.data["new_wa_id"] == "972912345678"
        assert event.sender.id == "972987654321"  # no contacts[]: the old number is all there is

    def test_revoke_and_edit(self) -> None:
        deleted = one("deleted_message.json", "revoke")
        assert (deleted.kind, deleted.type, deleted.reply_to) == (
            InboundKind.event,
            "message_deleted",
            "<ORIGINAL_WHATSAPP_MESSAGE_ID>",
        )
        edited = one("edited_message.json", "image")
        assert edited.type == "message_edited"
        assert edited.data["message"]["image"]["caption"] == "Updated image caption"

    def test_template_status_is_an_account_event(self) -> None:
        event = one("template_status_update.json", "rejected")
        assert (event.kind, event.type) == (InboundKind.event, "template_status")
        assert event.data["scope"] == "account"
        assert event.data["event"] == "REJECTED"
        assert event.account_external_id == event.sender.id  # the WABA, not a customer

    def test_account_update(self) -> None:
        event = one("account_update.json", "account_violation")
        assert (event.type, event.data["event"]) == ("account_update", "ACCOUNT_VIOLATION")

    def test_unknown_field_is_unsupported(self) -> None:
        body = {
            "object": "whatsapp_business_account",
            "entry": [{"id": "1", "changes": [{"field": "new_thing", "value": {"a": 1}}]}],
        }
        [event] = parse(body)
        assert (event.kind, event.type, event.data["field"]) == (
            InboundKind.event,
            "unsupported",
            "new_thing",
        )

    def test_account_events_dedupe_on_content(self) -> None:
        body = load("account_update.json")["account_deleted"]
        assert parse(body)[0].dedupe_key == parse(body)[0].dedupe_key
        other = load("account_update.json")["account_offboarded"]
        assert parse(body)[0].dedupe_key != parse(other)[0].dedupe_key

    def test_echo(self) -> None:
        event = one("outgoing_message.json", "text")
        assert (event.type, event.text, event.data["direction"]) == (
            "message_echo",
            "Test message",
            "outbound",
        )


class TestStatuses:
    @pytest.mark.parametrize("state", ["sent", "delivered", "read", "failed"])
    def test_states(self, state: str) -> None:
        event = one("message_status.json", state)
        assert (event.kind, event.type) == (InboundKind.status, state)
        assert event.status is not None
        assert (event.status.message_id, event.status.status) == ("wamid.xyzxyz", state)
        assert event.dedupe_key == f"status:wamid.xyzxyz:{state}"

    def test_failed_carries_the_error(self) -> None:
        status = one("message_status.json", "failed").status
        assert status is not None
        assert status.error_code == 130472
        assert status.error_title == "User's number is part of an experiment"
        assert status.error_detail is not None and "experiment" in status.error_detail

    def test_played_is_read(self) -> None:
        event = one("message_status.json", "played")
        assert event.type == "read"
        assert event.dedupe_key == "status:wamid.xyzxyz:played"
        assert event.data["platform_status"] == "played"

    def test_tracker_is_the_idempotency_key(self) -> None:
        event = one("message_status.json", "with_tracker")
        assert event.data["idempotency_key"] == "some data"

    def test_status_sender_matches_the_message_sender(self) -> None:
        status_sender = one("message_status.json", "sent").sender
        message_sender = one("message.json", "text").sender
        assert status_sender.id == message_sender.id


def _message(
    wamid: str, text: str, *, sender: str | None = "111", user_id: str | None = None
) -> dict[str, Any]:
    message: dict[str, Any] = {"id": wamid, "timestamp": "1700000000", "type": "text", "text": {"body": text}}
    if sender:
        message["from"] = sender
    if user_id:
        message["from_user_id"] = user_id
    return message


def _status(wamid: str, state: str) -> dict[str, Any]:
    return {"id": wamid, "status": state, "timestamp": "1700000001", "recipient_id": "111"}


def _value(
    number: str, *, messages: Sequence[Any] = (), statuses: Sequence[Any] = (), contacts: Sequence[Any] = ()
) -> dict[str, Any]:
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "1", "phone_number_id": number},
    }
    if messages:
        value["messages"] = list(messages)
    if statuses:
        value["statuses"] = list(statuses)
    if contacts:
        value["contacts"] = list(contacts)
    return value


class TestBatches:
    def test_every_entry_change_message_and_status(self) -> None:
        body = {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "waba",
                    "changes": [
                        {
                            "field": "messages",
                            "value": _value(
                                "n1", messages=[_message("w1", "one"), _message("w2", "two", sender="222")]
                            ),
                        },
                        {
                            "field": "messages",
                            "value": _value(
                                "n2", statuses=[_status("w9", "sent"), _status("w9", "delivered")]
                            ),
                        },
                    ],
                },
                {
                    "id": "waba",
                    "changes": [
                        {"field": "messages", "value": _value("n1", messages=[_message("w3", "three")])}
                    ],
                },
            ],
        }
        events = parse(body)
        assert [e.dedupe_key for e in events] == [
            "msg:w1",
            "msg:w2",
            "status:w9:sent",
            "status:w9:delivered",
            "msg:w3",
        ]
        assert [e.account_external_id for e in events] == ["n1", "n1", "n2", "n2", "n1"]
        assert [e.sender.id for e in events[:2]] == ["111", "222"]

    def test_contacts_are_matched_to_their_messages(self) -> None:
        contacts = [
            {"profile": {"name": "A"}, "wa_id": "111", "user_id": "US.1"},
            {"profile": {"name": "B"}, "wa_id": "222", "user_id": "US.2"},
        ]
        events = parse(
            {
                "object": "whatsapp_business_account",
                "entry": [
                    {
                        "id": "w",
                        "changes": [
                            {
                                "field": "messages",
                                "value": _value(
                                    "n",
                                    messages=[_message("a", "x", sender="222"), _message("b", "y")],
                                    contacts=contacts,
                                ),
                            }
                        ],
                    }
                ],
            }
        )
        assert [(e.sender.id, e.sender.display_name) for e in events] == [("US.2", "B"), ("US.1", "A")]

    def test_bsuid_only_user(self) -> None:
        contacts = [{"profile": {"name": "Zoe", "username": "zoe"}, "user_id": "US.777"}]
        [event] = parse(
            {
                "object": "whatsapp_business_account",
                "entry": [
                    {
                        "id": "w",
                        "changes": [
                            {
                                "field": "messages",
                                "value": _value(
                                    "n",
                                    messages=[_message("z", "hi", sender=None, user_id="US.777")],
                                    contacts=contacts,
                                ),
                            }
                        ],
                    }
                ],
            }
        )
        assert (event.sender.id, event.sender.bsuid, event.sender.phone, event.sender.username) == (
            "US.777",
            "US.777",
            None,
            "zoe",
        )

    def test_username_user_known_only_by_contact(self) -> None:
        contacts = [{"profile": {"name": "Zoe"}, "user_id": "US.778"}]
        [event] = parse(
            {
                "object": "whatsapp_business_account",
                "entry": [
                    {
                        "id": "w",
                        "changes": [
                            {
                                "field": "messages",
                                "value": _value(
                                    "n", messages=[_message("z", "hi", sender=None)], contacts=contacts
                                ),
                            }
                        ],
                    }
                ],
            }
        )
        assert event.sender.id == "US.778"


class TestMalformed:
    @pytest.mark.parametrize(
        ("body", "fragment"),
        [
            (b"", "empty"),
            (b"{not json", "not valid JSON"),
            (b"\xff\xfe", "UTF-8"),
            (b"[1, 2]", "JSON object"),
            (b'"text"', "JSON object"),
            (b'{"object": "whatsapp_business_account", "entry": NaN}', "not valid JSON"),
            (b'{"object": "whatsapp_business_account", "entry": "x"}', "entry"),
            (b'{"object": "whatsapp_business_account"}', "entry"),
            (b'{"entry": []}', "object"),
            (b'{"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": "x"}]}', "changes"),
            (b'{"object": "whatsapp_business_account", "entry": [{"id": 5, "changes": []}]}', "id"),
            (
                b'{"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": []}]}]}',
                "value",
            ),
        ],
    )
    def test_rejected(self, body: bytes, fragment: str) -> None:
        with pytest.raises(MalformedPayloadError, match=fragment):
            parse_body(body)

    @pytest.mark.parametrize(
        ("change", "fragment"),
        [
            (
                {
                    "metadata": {"phone_number_id": "n"},
                    "messages": [{"timestamp": "1", "type": "text", "from": "1"}],
                },
                "id",
            ),
            (
                {
                    "metadata": {"phone_number_id": "n"},
                    "messages": [{"id": "w", "timestamp": "soon", "type": "text", "from": "1"}],
                },
                "timestamp",
            ),
            (
                {
                    "metadata": {"phone_number_id": "n"},
                    "messages": [
                        {"id": "w", "timestamp": "1", "type": "text", "from": "1", "text": {"body": 5}}
                    ],
                },
                "body",
            ),
            ({"metadata": {"phone_number_id": "n"}, "messages": "x"}, "messages"),
            ({"messages": []}, "metadata"),
            (
                {
                    "metadata": {"phone_number_id": "n"},
                    "messages": [{"id": "w", "timestamp": "1", "type": "text", "text": {"body": "x"}}],
                },
                "neither",
            ),
            ({"metadata": {"phone_number_id": "n"}, "statuses": [{"id": "w", "timestamp": "1"}]}, "status"),
        ],
    )
    def test_bad_messages_value(self, change: dict[str, Any], fragment: str) -> None:
        body = {
            "object": "whatsapp_business_account",
            "entry": [{"id": "1", "changes": [{"field": "messages", "value": change}]}],
        }
        with pytest.raises(MalformedPayloadError, match=fragment):
            parse(body)

    def test_deep_nesting(self) -> None:
        nested: Any = "x"
        for _ in range(100):
            nested = {"a": nested}
        with pytest.raises(MalformedPayloadError, match="deeper"):
            parse({"object": "whatsapp_business_account", "entry": [], "extra": nested})

    def test_other_platform_objects_are_unsupported(self) -> None:
        with pytest.raises(UnsupportedEventTypeError, match="instagram"):
            parse({"object": "instagram", "entry": []})

    def test_unknown_fields_are_ignored(self) -> None:
        body = load("message.json")["text"]
        body["brand_new"] = {"x": 1}
        body["entry"][0]["changes"][0]["value"]["messages"][0]["shiny"] = [1, 2]
        assert parse(body)[0].text == "Body Text"
