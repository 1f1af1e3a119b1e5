"""What a simulated user does, turned into the push the platform would send.

Each action also changes what the platform knows: following sets the user's
subscription, a message opens the 48-hour window (5 messages), a follow, a QR scan
or a ``click``/``scancode_*`` menu button opens a 1-minute allowance of 3
(PROTOCOLS.md 1.7.3).
"""

from __future__ import annotations

import base64
import secrets
from typing import Any

from parley.sandbox.wechat.state import Grant, Platform, SimAccount, SimUser

MESSAGE_ACTIONS = frozenset({"text", "image", "voice", "video", "shortvideo", "location", "link"})
SHORT_GRANT_EVENTS = frozenset({"click", "scancode_push", "scancode_waitmsg"})
SHORT_GRANT_S = 60
SHORT_GRANT_MESSAGES = 3
PIC_EVENTS = frozenset({"pic_sysphoto", "pic_photo_or_album", "pic_weixin"})

SAMPLE_IMAGE = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="240" height="160" viewBox="0 0 240 160">'
    '<rect width="240" height="160" rx="12" fill="#{color}"/>'
    '<circle cx="70" cy="60" r="22" fill="#fff" opacity=".85"/>'
    '<path d="M20 140 L90 80 L140 125 L175 95 L225 140 Z" fill="#fff" opacity=".7"/>'
    "</svg>"
)


class ActionError(ValueError):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _grant(platform: Platform, account: SimAccount, user: SimUser, kind: str) -> None:
    now = platform.now()
    if kind == "message":
        user.last_message_at = now
        user.grants = [g for g in user.grants if g.kind != "message"]
        limits = account.limits
        user.grants.append(Grant("message", now + limits.window_hours * 3600, limits.window_messages))
    else:
        user.grants.append(Grant(kind, now + SHORT_GRANT_S, SHORT_GRANT_MESSAGES))
    user.grants = [g for g in user.grants if g.expires_at > now]


def store_media(
    platform: Platform, *, kind: str, content: bytes, content_type: str, filename: str, app_id: str
) -> str:
    media_id = secrets.token_urlsafe(48)
    platform.media[media_id] = {
        "type": kind,
        "content": content,
        "content_type": content_type,
        "filename": filename,
        "app_id": app_id,
        "created_at": int(platform.now()),
    }
    return media_id


def _ticket_for(platform: Platform, account: SimAccount, scene: str) -> str:
    for ticket, qr in platform.qrcodes.items():
        if qr["app_id"] == account.app_id and str(qr["scene"]) == scene:
            return ticket
    return base64.b64encode(secrets.token_bytes(48)).decode()


def build_action(
    platform: Platform, account: SimAccount, user: SimUser, action: dict[str, Any], *, base_url: str
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The push fields for ``action`` and the phone's conversation entry for it (None for silent ones)."""
    kind = str(action.get("type", ""))
    now = int(platform.now())
    head: dict[str, Any] = {
        "ToUserName": account.original_id,
        "FromUserName": user.openid,
        "CreateTime": int(action.get("create_time") or now),
    }
    if kind == "raw":
        return {"__raw__": str(action.get("xml", ""))}, None
    if kind in MESSAGE_ACTIONS:
        if not user.subscribed:
            raise ActionError("only followers can message an Official Account", 409)
        fields, said = _message(platform, account, kind, action, base_url)
        _grant(platform, account, user, "message")
        msg_id = int(action.get("msg_id") or platform.msg_id())
        return {**head, "MsgType": kind, **fields, "MsgId": msg_id}, said
    event_fields, shown = _event(platform, account, user, kind, action)
    return {**head, "MsgType": "event", **event_fields}, shown


def _required(action: dict[str, Any], name: str) -> str:
    value = action.get(name)
    if value is None or str(value) == "":
        raise ActionError(f"{action.get('type')} needs '{name}'")
    return str(value)


def _message(
    platform: Platform, account: SimAccount, kind: str, action: dict[str, Any], base_url: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    if kind == "text":
        content = _required(action, "content")
        fields: dict[str, Any] = {"Content": content}
        if action.get("menu_option_id"):
            fields["bizmsgmenuid"] = str(action["menu_option_id"])
        return fields, {"content": content}
    if kind == "image":
        media_id = action.get("media_id")
        if not media_id:
            if action.get("image_base64"):
                content_bytes = base64.b64decode(str(action["image_base64"]))
                content_type = str(action.get("mime") or "image/jpeg")
            else:
                color = secrets.choice(["07c160", "2f86eb", "f5a623", "e64340", "8e6cef"])
                content_bytes, content_type = SAMPLE_IMAGE.format(color=color).encode(), "image/svg+xml"
            media_id = store_media(
                platform,
                kind="image",
                content=content_bytes,
                content_type=content_type,
                filename="photo",
                app_id=account.app_id,
            )
        pic_url = str(action.get("pic_url") or f"{base_url}_sandbox/media/{media_id}")
        return {"PicUrl": pic_url, "MediaId": str(media_id)}, {"pic_url": pic_url, "media_id": media_id}
    if kind == "voice":
        media_id = str(action.get("media_id") or secrets.token_urlsafe(48))
        fields = {"MediaId": media_id, "Format": str(action.get("format") or "amr")}
        if "recognition" in action:
            fields["Recognition"] = str(action.get("recognition") or "")
        return fields, {"media_id": media_id, "recognition": action.get("recognition")}
    if kind in ("video", "shortvideo"):
        media_id = str(action.get("media_id") or secrets.token_urlsafe(48))
        thumb = str(action.get("thumb_media_id") or secrets.token_urlsafe(48))
        return {"MediaId": media_id, "ThumbMediaId": thumb}, {"media_id": media_id}
    if kind == "location":
        lat, lon = float(action.get("latitude", 23.134521)), float(action.get("longitude", 113.358803))
        label = str(action.get("label") or "广州市海珠区")
        scale = int(action.get("scale") or 15)
        fields = {"Location_X": lat, "Location_Y": lon, "Scale": scale, "Label": label}
        return fields, {"latitude": lat, "longitude": lon, "label": label}
    # link
    url = _required(action, "url")
    title, description = str(action.get("title") or url), str(action.get("description") or "")
    return {"Title": title, "Description": description, "Url": url}, {"title": title, "url": url}


def _event(
    platform: Platform, account: SimAccount, user: SimUser, kind: str, action: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    now = int(platform.now())
    if kind in ("follow", "subscribe") or (kind == "scan" and not user.subscribed):
        if user.subscribed:
            raise ActionError("the user already follows this account", 409)
        scene = str(action.get("scene") or "")
        user.subscribed, user.subscribe_time = True, now
        fields: dict[str, Any] = {"Event": "subscribe"}
        if scene:
            user.subscribe_scene = "ADD_SCENE_QR_CODE"
            if scene.isdigit():
                user.qr_scene, user.qr_scene_str = int(scene), ""
            else:
                user.qr_scene, user.qr_scene_str = 0, scene
            fields |= {"EventKey": f"qrscene_{scene}", "Ticket": _ticket_for(platform, account, scene)}
        else:
            user.subscribe_scene = str(action.get("subscribe_scene") or "ADD_SCENE_SEARCH")
            fields["EventKey"] = ""
        _grant(platform, account, user, "follow")
        return fields, {"event": "subscribe", "scene": scene or None}
    if kind in ("unfollow", "unsubscribe"):
        if not user.subscribed:
            raise ActionError("the user does not follow this account", 409)
        user.subscribed = False
        user.grants = []
        return {"Event": "unsubscribe", "EventKey": ""}, {"event": "unsubscribe"}
    if not user.subscribed and kind not in ("view",):
        raise ActionError("only followers can use the account's menu", 409)
    if kind == "scan":
        scene = _required(action, "scene")
        _grant(platform, account, user, "scan")
        return {"Event": "SCAN", "EventKey": scene, "Ticket": _ticket_for(platform, account, scene)}, {
            "event": "scan",
            "scene": scene,
        }
    if kind == "click":
        key = _required(action, "key")
        _grant(platform, account, user, "click")
        return {"Event": "CLICK", "EventKey": key}, {"event": "click", "key": key, "name": action.get("name")}
    if kind == "view":
        url = _required(action, "url")
        return {"Event": "VIEW", "EventKey": url}, {"event": "view", "url": url, "name": action.get("name")}
    if kind == "location_report":
        lat, lon = float(action.get("latitude", 23.137466)), float(action.get("longitude", 113.352425))
        precision = float(action.get("precision", 119.385040))
        return {"Event": "LOCATION", "Latitude": lat, "Longitude": lon, "Precision": precision}, None
    if kind in ("scancode_push", "scancode_waitmsg"):
        key = _required(action, "key")
        _grant(platform, account, user, "click")
        info = {
            "ScanType": str(action.get("scan_type") or "qrcode"),
            "ScanResult": str(action.get("scan_result") or ""),
        }
        return {"Event": kind, "EventKey": key, "ScanCodeInfo": info}, {"event": kind, "key": key}
    if kind in PIC_EVENTS:
        key = _required(action, "key")
        count = int(action.get("count") or 1)
        items = [{"PicMd5Sum": secrets.token_hex(16)} for _ in range(count)]
        return {
            "Event": kind,
            "EventKey": key,
            "SendPicsInfo": {"Count": count, "PicList": {"item": items}},
        }, {
            "event": kind,
            "key": key,
        }
    if kind == "location_select":
        key = _required(action, "key")
        info = {
            "Location_X": str(action.get("latitude", 23)),
            "Location_Y": str(action.get("longitude", 113)),
            "Scale": str(action.get("scale", 15)),
            "Label": str(action.get("label") or "广州市海珠区客村艺苑路 106号"),
            "Poiname": str(action.get("poiname") or ""),
        }
        return {"Event": "location_select", "EventKey": key, "SendLocationInfo": info}, {
            "event": kind,
            "key": key,
        }
    raise ActionError(f"unknown action type {kind!r}")
