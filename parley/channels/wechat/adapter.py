"""The WeChat Official Account adapter (PROTOCOLS.md Part 1).

Decisions where the dossier leaves a choice:

* URL verification (GET) is the plain ``signature`` check in every mode; the
  encrypted-echostr/``msg_signature`` variant is WeCom's and is not applied (1.1).
* A POST is treated as encrypted when ``encrypt_type=aes`` or the body has an
  ``Encrypt`` element, and then only ``msg_signature`` counts (1.2). An account in
  compatible or safe mode refuses unencrypted pushes: the platform always
  encrypts in those modes and a plain body is not covered by any signature. In
  compatible mode only the decrypted copy of the fields is used.
* A ciphertext that does not open for this account (bad padding, foreign AppID)
  is a SignatureError; a value that is not a ciphertext at all is malformed.
* No timestamp freshness check: the dossier makes it optional and platform
  retries reuse the original request.
* Unknown ``MsgType``/``Event`` values are returned as type ``unsupported`` so the
  raw push is stored and acknowledged with ``success`` instead of failing (1.4).
* Dedupe keys: ``msg:{MsgId}`` for messages; for events
  ``evt:{FromUserName}:{CreateTime}:{event}`` plus ``:{EventKey}`` or ``:{MsgID}``
  when present, following the dossier's advice that two events can share a second
  (1.6). Long keys (VIEW URLs) are hashed to fit the 255-character column.
* ``account_external_id`` is the push's ``ToUserName`` (the gh_ id), as base.py documents.
* A passive reply always goes to the push's sender, whatever ``reply.to`` says, and
  news replies are cut to 1 article when answering a user message, 8 otherwise (1.6).
* ``send``: ``interactive`` carries one of the platform's other custom-message
  bodies as ``{msgtype: body}`` (``msgmenu``, ``mpnews``, ``mpnewsarticle``,
  ``miniprogrampage``, ``wxcard``); ``sender_external_id`` containing ``@`` is sent
  as ``customservice.kf_account``.
"""

from __future__ import annotations

import builtins
import hashlib
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx
import structlog

from parley.channels.base import (
    AccountContext,
    Capabilities,
    ChannelConfig,
    ChannelPermanentError,
    ChannelType,
    InboundEvent,
    InboundKind,
    Link,
    Location,
    MalformedPayloadError,
    Media,
    OutboundMessage,
    OutboundType,
    Sender,
    SendResult,
    SignatureError,
    StatusUpdate,
    TokenStore,
    WebhookAck,
    WebhookRequest,
)
from parley.channels.wechat.client import WeChatClient
from parley.channels.wechat.config import EncryptionMode, WeChatConfig
from parley.channels.wechat.crypto import (
    CiphertextRejected,
    MalformedCiphertext,
    MessageCrypto,
    check_signature,
)
from parley.channels.wechat.xml import Tree, as_list, build_body, is_json, parse_body

log = structlog.get_logger()

# PROTOCOLS.md 1.7.12, new-account defaults. user_info uses the 500,000 the console
# usually shows rather than the documented 5,000,000, so flow control errs low.
DAILY_QUOTAS: dict[str, int] = {
    "token": 2_000,
    "stable_token": 500_000,
    "menu_create": 1_000,
    "menu_get": 10_000,
    "menu_delete": 1_000,
    "media_upload": 100_000,
    "media_get": 200_000,
    "custom_send": 500_000,
    "qrcode_create": 100_000,
    "user_get": 500,
    "user_info": 500_000,
    "update_remark": 10_000,
    "mass_send": 100,
    "news_upload": 10,
}

# Menu clicks, follows and QR scans also open a (3 messages, 1 minute) allowance,
# but only a user message opens the 48-hour window that business logic plans on.
REPLY_WINDOW_HOURS = 48

MESSAGE_TYPES = frozenset(
    {"text", "image", "voice", "video", "shortvideo", "location", "link", "miniprogrampage"}
)
NEWS_MAX_FOR_MESSAGES = 1
NEWS_MAX_OTHERWISE = 8
_MAX_KEY = 255
# WebhookRequest.memo keys: the parsed body, and the opened (decrypted) push with the key that opened it.
_OUTER = "wechat.outer"
_OPENED = "wechat.opened"
_INTERACTIVE_TYPES = frozenset({"msgmenu", "mpnews", "mpnewsarticle", "miniprogrampage", "wxcard"})

# Event (lower-cased) → normalized type; anything else is "unsupported".
EVENT_TYPES: dict[str, str] = {
    "subscribe": "subscribe",
    "unsubscribe": "unsubscribe",
    "scan": "scan",
    "location": "location_report",
    "click": "menu_click",
    "view": "menu_view",
    "view_miniprogram": "menu_view",
    "scancode_push": "scancode",
    "scancode_waitmsg": "scancode",
    "pic_sysphoto": "menu_pic",
    "pic_photo_or_album": "menu_pic",
    "pic_weixin": "menu_pic",
    "location_select": "location_select",
    "templatesendjobfinish": "template_send_finished",
    "masssendjobfinish": "mass_send_finished",
    "kf_create_session": "kf_session_create",
    "kf_close_session": "kf_session_close",
    "kf_switch_session": "kf_session_switch",
    "subscribe_msg_popup_event": "subscribe_msg_popup",
    "subscribe_msg_change_event": "subscribe_msg_change",
    "subscribe_msg_sent_event": "subscribe_msg_sent",
}


# --- reading the tree ---------------------------------------------------------------------------


def _text(tree: Mapping[str, Any], name: str) -> str | None:
    value = tree.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedPayloadError(f"<{name}> must be text, got nested elements")
    return value


def _required(tree: Mapping[str, Any], name: str) -> str:
    value = _text(tree, name)
    if value is None or not value.strip():
        raise MalformedPayloadError(f"<{name}> is missing")
    return value.strip()


def _optional(tree: Mapping[str, Any], name: str) -> str | None:
    value = _text(tree, name)
    return value if value else None


def _integer(tree: Mapping[str, Any], name: str) -> int:
    value = _required(tree, name)
    try:
        return int(value)
    except ValueError as exc:
        raise MalformedPayloadError(f"<{name}> must be an integer, got {value!r}") from exc


def _number(tree: Mapping[str, Any], name: str, *, required: bool = True) -> float | None:
    value = _required(tree, name) if required else _optional(tree, name)
    if value is None or not value.strip():
        return None
    try:
        return float(value)
    except ValueError as exc:
        raise MalformedPayloadError(f"<{name}> must be a number, got {value!r}") from exc


def _branch(tree: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = tree.get(name)
    if value is None or value == "":
        return {}
    if not isinstance(value, Mapping):
        raise MalformedPayloadError(f"<{name}> must contain elements")
    return value


def _fit_key(key: str) -> str:
    if len(key) <= _MAX_KEY:
        return key
    return key[: _MAX_KEY - 65] + ":" + hashlib.sha256(key.encode()).hexdigest()


# --- the adapter --------------------------------------------------------------------------------


class WeChatAdapter:
    type: ClassVar[ChannelType] = ChannelType.wechat
    config_schema: ClassVar[builtins.type[ChannelConfig]] = WeChatConfig
    capabilities: ClassVar[Capabilities] = Capabilities(
        reply_window_hours=REPLY_WINDOW_HOURS,
        template_only_outside_window=True,
        passive_reply=True,
        webhook_deadline_s=5.0,
        default_rate_per_s=20.0,
        daily_quotas=DAILY_QUOTAS,
    )

    def __init__(self, account: AccountContext, http: httpx.AsyncClient, tokens: TokenStore) -> None:
        self.account = account
        self.client = WeChatClient(account, http, tokens)
        self.app_id = str(account.config.get("app_id") or account.external_id)
        self.mode = EncryptionMode(account.config.get("encryption_mode") or EncryptionMode.plain)
        self._token = account.secrets["token"]
        aes_key = account.secrets.get("encoding_aes_key")
        self._crypto = MessageCrypto(self._token, aes_key, self.app_id) if aes_key else None

    # --- callbacks --------------------------------------------------------------------------

    def handshake(self, request: WebhookRequest) -> WebhookAck:
        q = request.query
        echostr = q.get("echostr")
        if echostr is None:
            raise SignatureError("URL verification without echostr")
        if not check_signature(self._token, q.get("timestamp", ""), q.get("nonce", ""), q.get("signature")):
            raise SignatureError("URL verification signature does not match the account's Token")
        return WebhookAck(body=echostr.encode(), media_type="text/plain")

    def verify(self, request: WebhookRequest) -> None:
        q = request.query
        timestamp, nonce = q.get("timestamp", ""), q.get("nonce", "")
        # Check the cheap query signature before touching the body.
        if (
            q.get("encrypt_type", "raw") == "raw"
            and self.mode is EncryptionMode.plain
            and not check_signature(self._token, timestamp, nonce, q.get("signature"))
        ):
            raise SignatureError("signature does not match the account's Token")
        tree = self._outer(request)
        encrypt = tree.get("Encrypt")
        if q.get("encrypt_type") == "aes" or encrypt is not None:
            if not isinstance(encrypt, str) or not encrypt.strip():
                raise MalformedPayloadError("encrypted push without an <Encrypt> value")
            if self._crypto is None:
                raise SignatureError("encrypted push but the account has no EncodingAESKey")
            if not self._crypto.check(timestamp, nonce, encrypt.strip(), q.get("msg_signature")):
                raise SignatureError("msg_signature does not match the Encrypt value")
            return
        if self.mode is not EncryptionMode.plain:
            raise SignatureError(f"unencrypted push to an account in {self.mode.value} mode")

    @staticmethod
    def _outer(request: WebhookRequest) -> Tree:
        """The body as sent (the envelope when encrypted), parsed once per request."""
        tree: Tree | None = request.memo.get(_OUTER)
        if tree is None:
            tree = parse_body(request.body)  # a refusal is not kept: it is raised again next time
            request.memo[_OUTER] = tree
        return tree

    def _open(self, request: WebhookRequest) -> tuple[Tree, bool, bool]:
        """The push's fields (decrypted if encrypted), whether it was encrypted, whether it was JSON.

        Worked out once per request and key: ``verify``, ``parse`` and ``acknowledge`` all need
        it. The memo names the key it decrypted with (the webhook's account re-check may try a
        fresher copy of the account, with other credentials, on the same request).
        """
        found = request.memo.get(_OPENED)
        if found is not None and found[0] is self._crypto:
            opened: tuple[Tree, bool, bool] = found[1]
            return opened
        opened = self._open_once(request)
        request.memo[_OPENED] = (self._crypto, opened)
        return opened

    def _open_once(self, request: WebhookRequest) -> tuple[Tree, bool, bool]:
        as_json = is_json(request.body)
        tree = self._outer(request)
        encrypt = tree.get("Encrypt")
        if request.query.get("encrypt_type") != "aes" and encrypt is None:
            return tree, False, as_json
        if not isinstance(encrypt, str) or not encrypt.strip():
            raise MalformedPayloadError("encrypted push without an <Encrypt> value")
        if self._crypto is None:
            raise SignatureError("encrypted push but the account has no EncodingAESKey")
        try:
            inner = self._crypto.decrypt(encrypt.strip())
        except MalformedCiphertext as exc:
            raise MalformedPayloadError(str(exc)) from exc
        except CiphertextRejected as exc:
            raise SignatureError(str(exc)) from exc
        return parse_body(inner), True, is_json(inner)

    def parse(self, request: WebhookRequest) -> list[InboundEvent]:
        tree, _encrypted, _as_json = self._open(request)
        return [self._normalize(tree)]

    def _normalize(self, tree: Tree) -> InboundEvent:
        to_user = _required(tree, "ToUserName")
        openid = _required(tree, "FromUserName")
        create_time = _integer(tree, "CreateTime")
        try:
            occurred_at = datetime.fromtimestamp(create_time, UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise MalformedPayloadError(f"<CreateTime> out of range: {create_time}") from exc
        msg_type = _required(tree, "MsgType")
        common: dict[str, Any] = {
            "account_external_id": to_user,
            "sender": Sender(id=openid),
            "occurred_at": occurred_at,
        }
        if msg_type.lower() == "event":
            return self._event(tree, openid, create_time, common)
        return self._message(tree, msg_type, common)

    def _message(self, tree: Tree, msg_type: str, common: dict[str, Any]) -> InboundEvent:
        kind = msg_type.lower()
        msg_id = _optional(tree, "MsgId")
        data: dict[str, Any] = {"msg_type": msg_type}
        for name, key in (("MsgDataId", "msg_data_id"), ("Idx", "idx"), ("bizmsgmenuid", "menu_option_id")):
            if value := _optional(tree, name):
                data[key] = value
        if kind not in MESSAGE_TYPES:
            log.info("wechat.inbound.unsupported_message", msg_type=msg_type)
            key = (
                f"msg:{msg_id}"
                if msg_id
                else f"msg:{common['sender'].id}:{int(common['occurred_at'].timestamp())}:{kind}"
            )
            return InboundEvent(
                kind=InboundKind.message,
                type="unsupported",
                dedupe_key=_fit_key(key),
                platform_message_id=msg_id,
                data=data,
                **common,
            )
        if msg_id is None:
            raise MalformedPayloadError("<MsgId> is missing")
        fields: dict[str, Any] = {}
        if kind == "text":
            content = _text(tree, "Content")
            if content is None:
                raise MalformedPayloadError("<Content> is missing")
            fields["text"] = content
        elif kind == "image":
            fields["media"] = Media(media_id=_required(tree, "MediaId"), url=_optional(tree, "PicUrl"))
        elif kind == "voice":
            fields["media"] = Media(media_id=_required(tree, "MediaId"), format=_optional(tree, "Format"))
            fields["recognition"] = _optional(tree, "Recognition")
        elif kind in ("video", "shortvideo"):
            fields["media"] = Media(
                media_id=_required(tree, "MediaId"), thumb_media_id=_optional(tree, "ThumbMediaId")
            )
        elif kind == "location":
            label = _optional(tree, "Label")
            fields["location"] = Location(
                latitude=_number(tree, "Location_X") or 0.0,
                longitude=_number(tree, "Location_Y") or 0.0,
                precision=_number(tree, "Scale", required=False),
                address=label,
            )
        elif kind == "link":
            fields["link"] = Link(
                title=_optional(tree, "Title"),
                description=_optional(tree, "Description"),
                url=_required(tree, "Url"),
            )
        else:  # miniprogrampage
            data.update(
                {
                    "appid": _optional(tree, "AppId"),
                    "title": _optional(tree, "Title"),
                    "pagepath": _optional(tree, "PagePath"),
                    "thumb_url": _optional(tree, "ThumbUrl"),
                }
            )
            fields["media"] = Media(
                thumb_media_id=_optional(tree, "ThumbMediaId"), url=_optional(tree, "ThumbUrl")
            )
        return InboundEvent(
            kind=InboundKind.message,
            type=kind,
            dedupe_key=_fit_key(f"msg:{msg_id}"),
            platform_message_id=msg_id,
            data=data,
            **fields,
            **common,
        )

    def _event(self, tree: Tree, openid: str, create_time: int, common: dict[str, Any]) -> InboundEvent:
        event = _required(tree, "Event")
        name = event.lower()
        event_key = _optional(tree, "EventKey")
        normalized = EVENT_TYPES.get(name, "unsupported")
        data: dict[str, Any] = {"event": event}
        if event_key is not None:
            data["event_key"] = event_key
        fields: dict[str, Any] = {}
        job_msg_id = _optional(tree, "MsgID") or _optional(tree, "MsgId")

        if name == "subscribe":
            if event_key and event_key.startswith("qrscene_"):
                data["scene"] = event_key.removeprefix("qrscene_")
            if ticket := _optional(tree, "Ticket"):
                data["ticket"] = ticket
        elif name == "scan":
            data["scene"] = event_key or ""
            if ticket := _optional(tree, "Ticket"):
                data["ticket"] = ticket
        elif name == "location":
            fields["location"] = Location(
                latitude=_number(tree, "Latitude") or 0.0,
                longitude=_number(tree, "Longitude") or 0.0,
                precision=_number(tree, "Precision", required=False),
            )
        elif name in ("view", "view_miniprogram"):
            data["url"] = event_key or ""
            if menu_id := _optional(tree, "MenuId"):
                data["menu_id"] = menu_id
        elif name in ("scancode_push", "scancode_waitmsg"):
            info = _branch(tree, "ScanCodeInfo")
            data.update(
                mode=name.removeprefix("scancode_"),
                scan_type=_optional(info, "ScanType"),
                scan_result=_optional(info, "ScanResult"),
            )
        elif name.startswith("pic_"):
            info = _branch(tree, "SendPicsInfo")
            pics = as_list(_branch(info, "PicList").get("item"))
            data.update(
                source=name.removeprefix("pic_"),
                count=int(_optional(info, "Count") or len(pics)),
                pic_md5=[_optional(p, "PicMd5Sum") for p in pics if isinstance(p, Mapping)],
            )
        elif name == "location_select":
            info = _branch(tree, "SendLocationInfo")
            fields["location"] = Location(
                latitude=_number(info, "Location_X") or 0.0,
                longitude=_number(info, "Location_Y") or 0.0,
                precision=_number(info, "Scale", required=False),
                name=_optional(info, "Poiname"),
                address=_optional(info, "Label"),
            )
        elif name == "templatesendjobfinish":
            status = _optional(tree, "Status") or ""
            if job_msg_id is None:
                raise MalformedPayloadError("<MsgID> is missing")
            data.update(msg_id=job_msg_id, status=status)
            fields["reply_to"] = job_msg_id
            fields["status"] = StatusUpdate(
                message_id=job_msg_id,
                status="delivered" if status == "success" else "failed",
                recipient_id=openid,
                error_title=None if status == "success" else status,
            )
        elif name == "masssendjobfinish":
            if job_msg_id is None:
                raise MalformedPayloadError("<MsgID> is missing")
            data.update(msg_id=job_msg_id, status=_optional(tree, "Status") or "")
            for element, key in (
                ("TotalCount", "total_count"),
                ("FilterCount", "filter_count"),
                ("SentCount", "sent_count"),
                ("ErrorCount", "error_count"),
            ):
                if _optional(tree, element) is not None:
                    data[key] = _integer(tree, element)
            fields["reply_to"] = job_msg_id
        elif name in ("kf_create_session", "kf_close_session"):
            data["kf_account"] = _optional(tree, "KfAccount")
        elif name == "kf_switch_session":
            data.update(
                from_kf_account=_optional(tree, "FromKfAccount"), to_kf_account=_optional(tree, "ToKfAccount")
            )
        elif name.startswith("subscribe_msg_"):
            container = next(
                (v for k, v in tree.items() if k.startswith("SubscribeMsg") and isinstance(v, Mapping)), {}
            )
            data["items"] = [
                {k: v for k, v in item.items() if isinstance(v, str)}
                for item in as_list(container.get("List"))
                if isinstance(item, Mapping)
            ]
        elif normalized == "unsupported":
            log.info("wechat.inbound.unsupported_event", wx_event=event)

        discriminator = event_key or job_msg_id
        key = f"evt:{openid}:{create_time}:{name}" + (f":{discriminator}" if discriminator else "")
        return InboundEvent(
            kind=InboundKind.event,
            type=normalized,
            dedupe_key=_fit_key(key),
            platform_message_id=job_msg_id,
            data=data,
            **fields,
            **common,
        )

    # --- the webhook's answer ---------------------------------------------------------------

    def acknowledge(self, request: WebhookRequest, reply: OutboundMessage | None = None) -> WebhookAck:
        if reply is None:
            # "success" tells the platform not to retry and shows the user nothing (1.6).
            return WebhookAck(body=b"success", media_type="text/plain")
        tree, encrypted, as_json = self._open(request)
        fields = self._reply_fields(tree, reply)
        body = build_body(fields, as_json=as_json)
        media_type = "application/json" if as_json else "text/xml"
        if not (encrypted or self.mode is EncryptionMode.safe):
            return WebhookAck(body=body, media_type=media_type)
        if self._crypto is None:
            raise ChannelPermanentError("safe mode needs an EncodingAESKey to reply")
        sealed = self._crypto.encrypt_reply(body, nonce=request.query.get("nonce", ""))
        envelope = {
            "Encrypt": sealed.encrypt,
            "MsgSignature": sealed.msg_signature,
            "TimeStamp": int(sealed.timestamp),
            "Nonce": sealed.nonce,
        }
        return WebhookAck(body=build_body(envelope, as_json=as_json), media_type=media_type)

    def _reply_fields(self, tree: Tree, reply: OutboundMessage) -> dict[str, Any]:
        openid = _required(tree, "FromUserName")
        if reply.to != openid:
            log.warning("wechat.reply.recipient_mismatch", expected=openid)
        fields: dict[str, Any] = {
            "ToUserName": openid,
            "FromUserName": _required(tree, "ToUserName"),
            "CreateTime": int(time.time()),
        }
        kind = reply.type
        if kind is OutboundType.text:
            if not reply.text:
                raise ChannelPermanentError("a text reply needs text")
            fields |= {"MsgType": "text", "Content": reply.text}
        elif kind in (OutboundType.image, OutboundType.voice, OutboundType.audio):
            wx_type = "image" if kind is OutboundType.image else "voice"
            fields |= {"MsgType": wx_type, wx_type.capitalize(): {"MediaId": self._media_id(reply)}}
        elif kind is OutboundType.video:
            video: dict[str, Any] = {"MediaId": self._media_id(reply)}
            if reply.title:
                video["Title"] = reply.title
            if reply.description:
                video["Description"] = reply.description
            fields |= {"MsgType": "video", "Video": video}
        elif kind is OutboundType.music:
            thumb = reply.media.thumb_media_id if reply.media else None
            if not thumb:
                raise ChannelPermanentError("a music reply needs media.thumb_media_id")
            music: dict[str, Any] = {}
            for element, value in (
                ("Title", reply.title),
                ("Description", reply.description),
                ("MusicUrl", reply.music_url),
                ("HQMusicUrl", reply.hq_music_url),
            ):
                if value:
                    music[element] = value
            music["ThumbMediaId"] = thumb
            fields |= {"MsgType": "music", "Music": music}
        elif kind is OutboundType.news:
            if not reply.articles:
                raise ChannelPermanentError("a news reply needs at least one article")
            answering_message = _required(tree, "MsgType").lower() != "event"
            cap = NEWS_MAX_FOR_MESSAGES if answering_message else NEWS_MAX_OTHERWISE
            articles = reply.articles[:cap]
            items = [
                {"Title": a.title, "Description": a.description, "PicUrl": a.picurl, "Url": a.url}
                for a in articles
            ]
            fields |= {"MsgType": "news", "ArticleCount": len(items), "Articles": {"item": items}}
        else:
            raise ChannelPermanentError(f"WeChat has no passive reply of type {kind.value}")
        return fields

    @staticmethod
    def _media_id(message: OutboundMessage) -> str:
        if message.media is None or not message.media.media_id:
            raise ChannelPermanentError(
                f"a {message.type.value} message needs media.media_id (upload it first)"
            )
        return message.media.media_id

    async def templates(self) -> list[dict[str, Any]]:
        """The account's template messages, for the composer's template picker."""
        return await self.client.list_templates()

    # --- sending ----------------------------------------------------------------------------

    async def send(self, message: OutboundMessage) -> SendResult:
        if message.type is OutboundType.template:
            return await self._send_template(message)
        payload = self._custom_payload(message)
        data = await self.client.send_custom(payload, idempotency_key=message.idempotency_key)
        msgid = data.get("msgid")
        return SendResult(platform_message_id=str(msgid) if msgid is not None else None, raw=data)

    async def _send_template(self, message: OutboundMessage) -> SendResult:
        template = message.template
        if template is None:
            raise ChannelPermanentError("a template message needs a template")
        miniprogram = next((c["miniprogram"] for c in template.components if "miniprogram" in c), None)
        data = await self.client.send_template(
            message.to,
            template.name,
            template.data,
            url=template.url,
            miniprogram=miniprogram,
            client_msg_id=message.idempotency_key,
            idempotency_key=message.idempotency_key,
        )
        msgid = data.get("msgid")
        return SendResult(platform_message_id=str(msgid) if msgid is not None else None, raw=data)

    def _custom_payload(self, message: OutboundMessage) -> dict[str, Any]:
        kind = message.type
        body: dict[str, Any]
        if kind is OutboundType.text:
            if not message.text:
                raise ChannelPermanentError("a text message needs text")
            msgtype, body = "text", {"content": message.text}
        elif kind is OutboundType.image:
            msgtype, body = "image", {"media_id": self._media_id(message)}
        elif kind in (OutboundType.voice, OutboundType.audio):
            msgtype, body = "voice", {"media_id": self._media_id(message)}
        elif kind is OutboundType.video:
            body = {"media_id": self._media_id(message)}
            if message.media and message.media.thumb_media_id:
                body["thumb_media_id"] = message.media.thumb_media_id
            if message.title:
                body["title"] = message.title
            if message.description:
                body["description"] = message.description
            msgtype = "video"
        elif kind is OutboundType.music:
            thumb = message.media.thumb_media_id if message.media else None
            if not thumb:
                raise ChannelPermanentError("a music message needs media.thumb_media_id")
            body = {"thumb_media_id": thumb}
            for key, value in (
                ("title", message.title),
                ("description", message.description),
                ("musicurl", message.music_url),
                ("hqmusicurl", message.hq_music_url),
            ):
                if value:
                    body[key] = value
            msgtype = "music"
        elif kind is OutboundType.news:
            if not message.articles:
                raise ChannelPermanentError("a news message needs at least one article")
            articles = [a.model_dump() for a in message.articles]
            msgtype, body = "news", {"articles": articles}
        elif kind is OutboundType.interactive:
            spec = message.interactive or {}
            if len(spec) != 1 or next(iter(spec)) not in _INTERACTIVE_TYPES:
                raise ChannelPermanentError(
                    f"interactive must be one of {sorted(_INTERACTIVE_TYPES)} as {{type: body}}"
                )
            msgtype, content = next(iter(spec.items()))
            body = dict(content)
        else:
            raise ChannelPermanentError(f"WeChat cannot send a {kind.value} message")
        payload: dict[str, Any] = {"touser": message.to, "msgtype": msgtype, msgtype: body}
        if message.sender_external_id and "@" in message.sender_external_id:
            payload["customservice"] = {"kf_account": message.sender_external_id}
        return payload
