"""Webhook body → normalized :class:`InboundEvent` list (PROTOCOLS.md 2.2, 2.3, 2.9).

Reading rules:

* Every ``entry[]``, every ``changes[]`` and every ``messages[]`` / ``statuses[]``
  is read; one POST may batch several of each.
* ``dedupe_key`` is ``msg:{wamid}`` for messages and ``status:{wamid}:{status}``
  for statuses (one message moves through sent, delivered, read and each state
  is stored once). Changes without a platform id (account and template
  updates) are keyed by a digest of their content, which a retry repeats.

Identity (2.9): ``Sender.id`` is the business-scoped user id (BSUID,
``user_id`` / ``from_user_id``) when the payload has one, else the phone
``wa_id``. ``Sender.phone`` and ``Sender.bsuid`` are always both filled when
present, and ``username`` when the user has one. The BSUID is the identifier
that survives a user hiding their number behind a username, so an id chosen
this way needs no migration when Meta stops sending phone numbers; the inbox
must still resolve a contact by *any* of id / phone / bsuid, because a user
first seen before Meta sent BSUIDs was stored under the phone number.
``OutboundMessage.to`` may then be either form; the adapter sends a BSUID as
``recipient`` and a phone number as ``to``.

Mapping decisions:

* Message types: text, image, video, audio (``voice`` when ``audio.voice`` is
  true), document → ``file``, sticker, location, contacts, interactive
  (button_reply, list_reply, nfm_reply, call_permission_reply), button
  (template quick reply), reaction (``emoji`` empty or missing = removed,
  ``data["removed"]``), order, unsupported. An ``interactive`` without its
  object, or an unknown type, becomes ``unsupported``; nothing raises.
* ``system`` messages (number / identity changes), ``revoke`` and ``edit`` are
  not something the customer said: they become ``kind=event`` with types
  ``number_changed``, ``identity_changed``, ``user_id_changed``, ``system``,
  ``message_deleted``, ``message_edited``.
* ``played`` (voice note played) is reported as status ``read`` with
  ``data["platform_status"] = "played"``; its dedupe key keeps ``played``.
  Any other unknown status becomes an ``unsupported`` event.
* Other change fields become ``kind=event`` (types in ``FIELD_EVENT_TYPES``),
  ``unsupported`` when unknown. WABA-level events carry the WABA id as
  ``account_external_id`` and as ``sender.id`` with ``data["scope"] =
  "account"``: they come from the platform, not from a customer, and the inbox
  must not create a contact for them. Business-app echoes
  (``smb_message_echoes``) become ``message_echo`` events whose sender is the
  customer the business wrote to (``data["direction"] = "outbound"``).
* A ``value.errors[]`` next to messages is copied into each message's
  ``data["errors"]``; on its own it becomes an ``error`` event.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from parley.channels.base import (
    InboundEvent,
    InboundKind,
    Location,
    MalformedPayloadError,
    Media,
    Sender,
    StatusUpdate,
    UnsupportedEventTypeError,
)
from parley.channels.whatsapp.schemas import (
    Contact,
    MediaObject,
    Message,
    MessagesValue,
    Status,
    WebhookError,
    WebhookPayload,
)

WEBHOOK_OBJECT = "whatsapp_business_account"

FIELD_EVENT_TYPES: dict[str, str] = {
    "account_update": "account_update",
    "account_review_update": "account_review",
    "account_alerts": "account_alert",
    "business_capability_update": "business_capability",
    "message_template_status_update": "template_status",
    "template_category_update": "template_category",
    "message_template_quality_update": "template_quality",
    "message_template_components_update": "template_components",
    "phone_number_quality_update": "phone_number_quality",
    "phone_number_name_update": "phone_number_name",
    "security": "security",
    "flows": "flow_status",
}

STATUS_TYPES = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "failed": "failed",
    "played": "read",
}

SYSTEM_EVENT_TYPES = {
    "user_changed_number": "number_changed",
    "customer_changed_number": "number_changed",
    "customer_identity_changed": "identity_changed",
    "user_identity_changed": "identity_changed",
    "user_id_update": "user_id_changed",
}

MAX_JSON_DEPTH = 64

_M = TypeVar("_M", bound=BaseModel)


def parse_body(body: bytes, *, received_at: datetime | None = None) -> list[InboundEvent]:
    """Parses one webhook POST body; raises MalformedPayloadError on anything broken.

    Args:
        body: the raw request body (already signature-checked).
        received_at: used as ``occurred_at`` for changes that carry no time.

    Returns:
        Every message, status and event in the body, in payload order.
    """
    document = _load_json(body)
    payload = _validate(WebhookPayload, document, "body")
    if payload.object != WEBHOOK_OBJECT:
        raise UnsupportedEventTypeError(
            f"webhook object is {payload.object!r}, this adapter handles {WEBHOOK_OBJECT!r} only"
        )
    now = received_at or datetime.now(UTC)
    events: list[InboundEvent] = []
    for e_index, entry in enumerate(payload.entry):
        for c_index, change in enumerate(entry.changes):
            where = f"entry[{e_index}].changes[{c_index}].value"
            handler = _FIELD_HANDLERS.get(change.field)
            if handler is not None:
                events.extend(handler(entry.id, change.value, where, now))
            else:
                events.append(_account_event(entry.id, entry.time, change.field, change.value, now))
    return events


# --- JSON and validation -----------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _load_json(body: bytes) -> dict[str, Any]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedPayloadError(f"webhook body is not UTF-8: {exc}") from exc
    if not text.strip():
        raise MalformedPayloadError("webhook body is empty")
    try:
        document = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise MalformedPayloadError(f"webhook body is not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise MalformedPayloadError(f"webhook body must be a JSON object, got {type(document).__name__}")
    if _depth(document) > MAX_JSON_DEPTH:
        raise MalformedPayloadError(f"webhook body nests deeper than {MAX_JSON_DEPTH} levels")
    return document


def _depth(node: Any) -> int:
    # Iterative so that a hostile body can't exhaust the stack here either.
    deepest = 0
    stack: list[tuple[Any, int]] = [(node, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(item, dict):
            stack.extend((child, level + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, level + 1) for child in item)
    return deepest


def _validate(model: type[_M], data: Any, where: str) -> _M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{where}.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
            if err["loc"]
            else f"{where}: {err['msg']}"
            for err in exc.errors()[:5]
        )
        raise MalformedPayloadError(f"webhook body has the wrong shape: {problems}") from exc


def _timestamp(value: str | int, where: str) -> datetime:
    try:
        seconds = int(value)
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise MalformedPayloadError(f"{where}.timestamp is not unix seconds: {value!r}") from exc


def _digest(value: Any) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _errors(errors: list[WebhookError]) -> list[dict[str, Any]]:
    return [e.model_dump(exclude_none=True) for e in errors]


# --- identity ----------------------------------------------------------------------------------


def _find_contact(contacts: list[Contact], *, phone: str | None, bsuid: str | None) -> Contact | None:
    for contact in contacts:
        if (phone and contact.wa_id == phone) or (bsuid and contact.user_id == bsuid):
            return contact
    # A username-only user's message carries neither id; the contact is the only clue.
    if phone is None and bsuid is None and len(contacts) == 1:
        return contacts[0]
    return None


def _sender(contacts: list[Contact], *, phone: str | None, bsuid: str | None, where: str) -> Sender:
    contact = _find_contact(contacts, phone=phone, bsuid=bsuid)
    username: str | None = None
    display_name: str | None = None
    if contact is not None:
        phone = phone or contact.wa_id
        bsuid = bsuid or contact.user_id
        profile = contact.profile
        username = contact.username or (profile.username if profile else None)
        display_name = profile.name if profile else None
    user_id = bsuid or phone
    if not user_id:
        raise MalformedPayloadError(f"{where}: the user has neither a wa_id nor a business-scoped user id")
    return Sender(id=user_id, phone=phone, bsuid=bsuid, username=username, display_name=display_name)


def _parent_user_id(contacts: list[Contact], sender: Sender) -> str | None:
    contact = _find_contact(contacts, phone=sender.phone, bsuid=sender.bsuid)
    return contact.parent_user_id if contact else None


# --- field = messages --------------------------------------------------------------------------


def _messages_field(waba_id: str, raw: dict[str, Any], where: str, now: datetime) -> list[InboundEvent]:
    value = _validate(MessagesValue, raw, where)
    number_id = value.metadata.phone_number_id
    events: list[InboundEvent] = []
    for index, message in enumerate(value.messages):
        events.append(_message_event(value, message, f"{where}.messages[{index}]", number_id))
    for index, status in enumerate(value.statuses):
        events.append(_status_event(value, status, f"{where}.statuses[{index}]", number_id))
    if value.errors and not value.messages and not value.statuses:
        events.append(
            InboundEvent(
                kind=InboundKind.event,
                type="error",
                dedupe_key=f"error:{number_id}:{_digest(raw)}",
                account_external_id=number_id,
                sender=Sender(id=waba_id, display_name="WhatsApp"),
                occurred_at=now,
                data={"scope": "account", "errors": _errors(value.errors), "waba_id": waba_id},
            )
        )
    return events


def _media(obj: MediaObject) -> Media:
    return Media(
        media_id=obj.id,
        url=obj.url,
        mime_type=obj.mime_type,
        sha256=obj.sha256,
        caption=obj.caption,
        filename=obj.filename,
    )


def _message_event(value: MessagesValue, message: Message, where: str, number_id: str) -> InboundEvent:
    sender = _sender(value.contacts, phone=message.from_, bsuid=message.from_user_id, where=where)
    data: dict[str, Any] = {"wa_type": message.type}
    parent = message.from_parent_user_id or _parent_user_id(value.contacts, sender)
    if parent:
        data["parent_user_id"] = parent
    reply_to: str | None = None
    if message.context is not None:
        reply_to = message.context.id
        for flag in ("forwarded", "frequently_forwarded"):
            if getattr(message.context, flag):
                data[flag] = True
        if message.context.referred_product:
            data["referred_product"] = message.context.referred_product
    if message.referral:
        data["referral"] = message.referral
    errors = [*message.errors, *value.errors]
    if errors:
        data["errors"] = _errors(errors)

    kind = InboundKind.message
    kind_type = message.type
    text: str | None = None
    media: Media | None = None
    location: Location | None = None
    wa_type = message.type

    if wa_type == "text" and message.text is not None:
        text = message.text.body
    elif (
        wa_type in ("image", "video", "audio", "document", "sticker")
        and getattr(message, wa_type) is not None
    ):
        obj: MediaObject = getattr(message, wa_type)
        media = _media(obj)
        text = obj.caption
        if wa_type == "audio":
            kind_type = "voice" if obj.voice else "audio"
        elif wa_type == "document":
            kind_type = "file"
        elif wa_type == "sticker":
            data["animated"] = bool(obj.animated)
    elif wa_type == "location" and message.location is not None:
        loc = message.location
        location = Location(
            latitude=loc.latitude, longitude=loc.longitude, name=loc.name, address=loc.address
        )
        if loc.url:
            data["url"] = loc.url
    elif wa_type == "contacts" and message.contacts is not None:
        data["contacts"] = message.contacts
        names = [
            str(c["name"]["formatted_name"])
            for c in message.contacts
            if isinstance(c.get("name"), dict) and c["name"].get("formatted_name")
        ]
        text = ", ".join(names) or None
    elif wa_type == "interactive" and message.interactive is not None:
        text = _interactive(message, data)
    elif wa_type == "button" and message.button is not None:
        text = message.button.text
        data["payload"] = message.button.payload
    elif wa_type == "reaction" and message.reaction is not None:
        emoji = message.reaction.emoji or ""
        text = emoji or None
        data["emoji"] = emoji
        data["removed"] = emoji == ""
        reply_to = message.reaction.message_id
    elif wa_type == "order" and message.order is not None:
        data["order"] = message.order
        order_text = message.order.get("text")
        text = order_text if isinstance(order_text, str) and order_text else None
    elif wa_type == "system" and message.system is not None:
        kind = InboundKind.event
        system = message.system
        kind_type = SYSTEM_EVENT_TYPES.get(system.type or "", "system")
        text = system.body
        data["system"] = system.model_dump(exclude_none=True)
        new_phone = system.new_wa_id or system.wa_id
        if new_phone:
            data["new_wa_id"] = new_phone
        if system.user_id:
            data["new_user_id"] = system.user_id
    elif wa_type == "revoke" and message.revoke is not None:
        kind = InboundKind.event
        kind_type = "message_deleted"
        reply_to = message.revoke.original_message_id
    elif wa_type == "edit" and message.edit is not None:
        kind = InboundKind.event
        kind_type = "message_edited"
        reply_to = message.edit.original_message_id
        data["message"] = message.edit.message or {}
    elif wa_type == "request_welcome":
        kind = InboundKind.event
        kind_type = "welcome_request"
    else:
        kind_type = "unsupported"
        if message.unsupported and message.unsupported.get("type"):
            data["unsupported_type"] = message.unsupported["type"]

    return InboundEvent(
        kind=kind,
        type=kind_type,
        dedupe_key=f"msg:{message.id}",
        platform_message_id=message.id,
        account_external_id=number_id,
        sender=sender,
        occurred_at=_timestamp(message.timestamp, where),
        text=text,
        media=media,
        location=location,
        reply_to=reply_to,
        data=data,
    )


def _interactive(message: Message, data: dict[str, Any]) -> str | None:
    interactive = message.interactive
    assert interactive is not None  # noqa: S101 - the caller checked
    data["interactive_type"] = interactive.type
    reply = interactive.button_reply or interactive.list_reply
    if reply is not None:
        data["reply_id"] = reply.id
        if reply.description:
            data["description"] = reply.description
        return reply.title
    if interactive.nfm_reply is not None:
        flow = interactive.nfm_reply
        data["flow_name"] = flow.name
        response: Any = flow.response_json
        if flow.response_json:
            try:
                response = json.loads(flow.response_json)
            except ValueError:
                response = flow.response_json  # keep what the user sent rather than drop it
        data["response"] = response
        return flow.body
    if interactive.call_permission_reply is not None:
        data["call_permission"] = interactive.call_permission_reply
        return None
    return None


def _status_event(value: MessagesValue, status: Status, where: str, number_id: str) -> InboundEvent:
    occurred_at = _timestamp(status.timestamp, where)
    is_group = status.recipient_type == "group"
    phone = None if is_group else status.recipient_id
    bsuid = None if is_group else status.recipient_user_id
    recipient = status.recipient_user_id or status.recipient_id or "unknown"
    contact = _find_contact(value.contacts, phone=phone, bsuid=bsuid) if not is_group else None
    if contact is not None:
        phone = phone or contact.wa_id
        bsuid = bsuid or contact.user_id
    sender = Sender(
        id=bsuid or phone or recipient,
        phone=phone,
        bsuid=bsuid,
        display_name=contact.profile.name if contact and contact.profile else None,
    )
    data: dict[str, Any] = {"platform_status": status.status}
    for name in ("biz_opaque_callback_data", "conversation", "pricing", "recipient_type"):
        field_value = getattr(status, name)
        if field_value is not None:
            data[name] = field_value
    if status.biz_opaque_callback_data:
        # The adapter puts the outbound idempotency key here (adapter.py), so the
        # delivery layer can match a status even before it has stored the wamid.
        data["idempotency_key"] = status.biz_opaque_callback_data
    if status.errors:
        data["errors"] = _errors(status.errors)
    normalized = STATUS_TYPES.get(status.status.lower())
    if normalized is None:
        return InboundEvent(
            kind=InboundKind.event,
            type="unsupported",
            dedupe_key=f"status:{status.id}:{status.status}",
            platform_message_id=status.id,
            account_external_id=number_id,
            sender=sender,
            occurred_at=occurred_at,
            data=data,
        )
    first_error = status.errors[0] if status.errors else None
    return InboundEvent(
        kind=InboundKind.status,
        type=normalized,
        dedupe_key=f"status:{status.id}:{status.status.lower()}",
        platform_message_id=status.id,
        account_external_id=number_id,
        sender=sender,
        occurred_at=occurred_at,
        status=StatusUpdate(
            message_id=status.id,
            status=normalized,
            recipient_id=recipient,
            error_code=first_error.code if first_error else None,
            error_title=first_error.title or first_error.message if first_error else None,
            error_detail=first_error.detail if first_error else None,
        ),
        data=data,
    )


# --- other fields ------------------------------------------------------------------------------


def _number_id(raw: dict[str, Any], waba_id: str) -> str:
    metadata = raw.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("phone_number_id"), str):
        return str(metadata["phone_number_id"])
    return waba_id


def _contacts(raw: dict[str, Any], where: str) -> list[Contact]:
    contacts = raw.get("contacts", [])
    if not isinstance(contacts, list):
        raise MalformedPayloadError(f"{where}.contacts must be a list")
    return [_validate(Contact, c, f"{where}.contacts[{i}]") for i, c in enumerate(contacts)]


def _items(raw: dict[str, Any], key: str, where: str) -> list[dict[str, Any]]:
    items = raw.get(key, [])
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise MalformedPayloadError(f"{where}.{key} must be a list of objects")
    return items


def _item_time(item: dict[str, Any], where: str, now: datetime) -> datetime:
    stamp = item.get("timestamp")
    if isinstance(stamp, str | int) and not isinstance(stamp, bool):
        return _timestamp(stamp, where)
    return now


def _str(item: dict[str, Any], key: str) -> str | None:
    value = item.get(key)
    return value if isinstance(value, str) and value else None


def _calls_field(waba_id: str, raw: dict[str, Any], where: str, now: datetime) -> list[InboundEvent]:
    number_id = _number_id(raw, waba_id)
    contacts = _contacts(raw, where)
    events: list[InboundEvent] = []
    for key, event_type in (("calls", "call"), ("statuses", "call_status")):
        for index, item in enumerate(_items(raw, key, where)):
            here = f"{where}.{key}[{index}]"
            call_id = _str(item, "id")
            if call_id is None:
                raise MalformedPayloadError(f"{here}.id is missing")
            state = _str(item, "event") or _str(item, "status") or ""
            user_phone = _str(item, "from") if item.get("direction") == "USER_INITIATED" else _str(item, "to")
            if len(contacts) == 1:
                sender = _sender(contacts, phone=None, bsuid=None, where=here)
            else:
                sender = _sender(
                    contacts, phone=user_phone or _str(item, "recipient_id"), bsuid=None, where=here
                )
            events.append(
                InboundEvent(
                    kind=InboundKind.event,
                    type=event_type,
                    dedupe_key=f"{event_type}:{call_id}:{state}",
                    platform_message_id=call_id,
                    account_external_id=number_id,
                    sender=sender,
                    occurred_at=_item_time(item, here, now),
                    data={"call": item},
                )
            )
    return events


def _echoes_field(waba_id: str, raw: dict[str, Any], where: str, now: datetime) -> list[InboundEvent]:
    number_id = _number_id(raw, waba_id)
    contacts = _contacts(raw, where)
    events: list[InboundEvent] = []
    for index, item in enumerate(_items(raw, "message_echoes", where)):
        here = f"{where}.message_echoes[{index}]"
        echo_id = _str(item, "id")
        if echo_id is None:
            raise MalformedPayloadError(f"{here}.id is missing")
        sender = _sender(contacts, phone=_str(item, "to"), bsuid=_str(item, "to_user_id"), where=here)
        text_obj = item.get("text")
        text = _str(text_obj, "body") if isinstance(text_obj, dict) else None
        events.append(
            InboundEvent(
                kind=InboundKind.event,
                type="message_echo",
                dedupe_key=f"echo:{echo_id}",
                platform_message_id=echo_id,
                account_external_id=number_id,
                sender=sender,
                occurred_at=_item_time(item, here, now),
                text=text,
                data={"direction": "outbound", "message": item},
            )
        )
    return events


def _preferences_field(waba_id: str, raw: dict[str, Any], where: str, now: datetime) -> list[InboundEvent]:
    number_id = _number_id(raw, waba_id)
    contacts = _contacts(raw, where)
    events: list[InboundEvent] = []
    for index, item in enumerate(_items(raw, "user_preferences", where)):
        here = f"{where}.user_preferences[{index}]"
        phone = _str(item, "wa_id")
        bsuid = _str(item, "user_id")
        if _find_contact(contacts, phone=phone, bsuid=bsuid) is None and (phone or bsuid):
            sender = Sender(id=bsuid or phone or "", phone=phone, bsuid=bsuid)
        else:
            sender = _sender(contacts, phone=phone, bsuid=bsuid, where=here)
        events.append(
            InboundEvent(
                kind=InboundKind.event,
                type="user_preferences",
                dedupe_key=f"pref:{sender.id}:{_digest(item)}",
                account_external_id=number_id,
                sender=sender,
                occurred_at=_item_time(item, here, now),
                data={"category": item.get("category"), "value": item.get("value"), "preference": item},
            )
        )
    return events


def _account_event(
    waba_id: str, entry_time: int | None, field: str, raw: dict[str, Any], now: datetime
) -> InboundEvent:
    occurred_at = _timestamp(entry_time, f"entry[{waba_id}]") if entry_time else now
    event_type = FIELD_EVENT_TYPES.get(field, "unsupported")
    data: dict[str, Any] = {"scope": "account", "field": field, "waba_id": waba_id, "value": raw}
    if isinstance(raw.get("event"), str):
        data["event"] = raw["event"]
    return InboundEvent(
        kind=InboundKind.event,
        type=event_type,
        dedupe_key=f"{field}:{waba_id}:{_digest({'time': entry_time, 'value': raw})}",
        account_external_id=waba_id,
        sender=Sender(id=waba_id, display_name="WhatsApp"),
        occurred_at=occurred_at,
        data=data,
    )


_FieldHandler = Callable[[str, dict[str, Any], str, datetime], list[InboundEvent]]

_FIELD_HANDLERS: dict[str, _FieldHandler] = {
    "messages": _messages_field,
    "calls": _calls_field,
    "smb_message_echoes": _echoes_field,
    "user_preferences": _preferences_field,
}
