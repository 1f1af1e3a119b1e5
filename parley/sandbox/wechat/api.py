"""The platform's API: same paths, parameters, response shapes and errcodes (PROTOCOLS.md 1.7).

Every call goes through :func:`gate`, which does what the platform does before
the API itself runs: authenticate the access token (41001/40001/42001), then the
simulator's injected faults, the per-second rate limit and the daily quota (45009).
Errors are HTTP 200 with ``{"errcode", "errmsg"}``; errmsg ends with `` rid: …``
as on the real platform.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from collections import Counter
from html import escape
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.datastructures import UploadFile

from parley.sandbox.wechat.actions import store_media
from parley.sandbox.wechat.state import Fault, HttpFault, Platform, SimAccount, SimUser, WxError

router = APIRouter()

IDEMPOTENCY_HEADER = "x-parley-idempotency-key"
MEDIA_LIFETIME_S = 3 * 24 * 3600
OAUTH_CODE_LIFETIME_S = 300
MEDIA_LIMITS = {
    "image": 10 * 1024 * 1024,
    "voice": 2 * 1024 * 1024,
    "video": 10 * 1024 * 1024,
    "thumb": 64 * 1024,
}
CUSTOM_TYPES = frozenset(
    {
        "text",
        "image",
        "voice",
        "video",
        "music",
        "news",
        "mpnews",
        "mpnewsarticle",
        "msgmenu",
        "wxcard",
        "miniprogrampage",
    }
)
MASS_TYPES = frozenset({"text", "image", "voice", "mpvideo", "mpnews", "wxcard"})
MENU_TYPES = frozenset(
    {
        "click",
        "view",
        "scancode_push",
        "scancode_waitmsg",
        "pic_sysphoto",
        "pic_photo_or_album",
        "pic_weixin",
        "location_select",
        "media_id",
        "article_id",
        "article_view_limited",
        "miniprogram",
        "view_limited",
    }
)


def platform_of(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


def ok(**fields: Any) -> JSONResponse:
    return JSONResponse({"errcode": 0, "errmsg": "ok", **fields})


async def json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        raise WxError(44002)
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise WxError(47001) from exc
    if not isinstance(data, dict):
        raise WxError(47001)
    return data


async def _throttle(platform: Platform, account: SimAccount, api: str, request: Request) -> None:
    limits = account.limits
    if limits.delay_s:
        await asyncio.sleep(limits.delay_s)
    fault = next((f for f in limits.faults if f.count > 0 and f.api in (None, api)), None)
    if fault is not None:
        fault.count -= 1
        await _apply_fault(fault)
    now = platform.now()
    if limits.rate_limit_per_s:
        window = account.recent_calls
        while window and window[0] <= now - 1.0:
            window.popleft()
        if len(window) >= limits.rate_limit_per_s:
            raise WxError(limits.rate_limit_errcode)
        window.append(now)
    day = platform.beijing_day()
    if account.usage_day != day:
        account.usage_day, account.usage = day, Counter()
    quota = limits.daily_quotas.get(api)
    if quota is not None and account.usage[api] >= quota:
        raise WxError(45009)
    account.usage[api] += 1


async def _apply_fault(fault: Fault) -> None:
    if fault.delay_s:
        await asyncio.sleep(fault.delay_s)
    if fault.http_status:
        raise HttpFault(fault.http_status)
    if fault.errcode is not None:
        raise WxError(fault.errcode)


def _log_call(platform: Platform, request: Request, api: str, app_id: str | None) -> None:
    entry = {
        "seq": platform.seq(),
        "ts": platform.now(),
        "app_id": app_id,
        "api": api,
        "method": request.method,
        "path": request.url.path,
        "idempotency_key": request.headers.get(IDEMPOTENCY_HEADER),
        "errcode": 0,
    }
    platform.calls.append(entry)
    platform.stats_calls[api] += 1
    request.state.call = entry


async def gate(request: Request, api: str) -> SimAccount:
    """Authenticates the ``access_token`` and applies faults, rate limit and quota."""
    platform = platform_of(request)
    value = request.query_params.get("access_token")
    token = platform.tokens.get(value) if value else None
    account = platform.account(token.app_id) if token else None
    _log_call(platform, request, api, account.app_id if account else None)
    if not value:
        raise WxError(41001)
    if token is None or account is None:
        raise WxError(40001)
    now = platform.now()
    if token.revoked_at is not None and now >= token.revoked_at:
        raise WxError(40001)
    if now >= token.expires_at:
        raise WxError(42001)
    await _throttle(platform, account, api, request)
    return account


async def gate_app(request: Request, api: str, app_id: str | None, secret: str | None) -> SimAccount:
    """For the calls authenticated by AppID and AppSecret (tokens, OAuth)."""
    platform = platform_of(request)
    account = platform.account(app_id or "")
    _log_call(platform, request, api, account.app_id if account else None)
    if account is None:
        raise WxError(40013)
    if secret is not None and not secrets.compare_digest(secret.encode(), account.app_secret.encode()):
        raise WxError(40125)
    await _throttle(platform, account, api, request)
    return account


def _object(body: dict[str, Any], name: str) -> dict[str, Any]:
    value = body.get(name)
    return value if isinstance(value, dict) else {}


def _user(account: SimAccount, openid: Any, *, subscribed: bool = True) -> SimUser:
    user = account.users.get(str(openid or ""))
    if user is None:
        raise WxError(40003)
    if subscribed and not user.subscribed:
        raise WxError(43004)
    return user


# --- access tokens ------------------------------------------------------------------------------


@router.get("/cgi-bin/token")
async def get_token(request: Request) -> JSONResponse:
    q = request.query_params
    account = await gate_app(request, "token", q.get("appid"), q.get("secret") or "")
    if q.get("grant_type") != "client_credential":
        raise WxError(40002)
    platform = platform_of(request)
    now = platform.now()
    previous = account.cgi_token
    if previous is not None and previous.revoked_at is None:
        # Each call supersedes the last token; it keeps working about 5 more minutes.
        previous.revoked_at = min(previous.expires_at, now + 300)
    account.cgi_token = platform.issue_token(account, "token")
    return JSONResponse(
        {"access_token": account.cgi_token.value, "expires_in": account.limits.token_lifetime_s}
    )


@router.post("/cgi-bin/stable_token")
async def stable_token(request: Request) -> JSONResponse:
    body = await json_body(request)
    account = await gate_app(request, "stable_token", body.get("appid"), str(body.get("secret") or ""))
    if body.get("grant_type") != "client_credential":
        raise WxError(40002)
    platform = platform_of(request)
    now = platform.now()
    current = account.stable_token
    lifetime = account.limits.token_lifetime_s
    if body.get("force_refresh"):
        account.forced_refreshes = [t for t in account.forced_refreshes if t > now - 86400]
        if len(account.forced_refreshes) >= 20:
            raise WxError(45009)
        account.forced_refreshes.append(now)
        if current is not None:
            current.revoked_at = now
        current = None
    # The platform hands out the same token while it is valid and rotates it shortly
    # before expiry (5 min for a 2-hour token; proportionally for short test lifetimes).
    rotate_before = min(300.0, lifetime / 10)
    if current is None or current.revoked_at is not None or current.expires_at - now <= rotate_before:
        current = platform.issue_token(account, "stable_token")
        account.stable_token = current
    return JSONResponse({"access_token": current.value, "expires_in": max(1, int(current.expires_at - now))})


# --- messages -----------------------------------------------------------------------------------


def _check_media(platform: Platform, media_id: Any) -> None:
    media = platform.media.get(str(media_id or ""))
    if media is None or platform.now() - media["created_at"] > MEDIA_LIFETIME_S:
        raise WxError(40007)


def _validate_custom(platform: Platform, body: dict[str, Any]) -> tuple[str, Any]:
    msgtype = str(body.get("msgtype") or "")
    if msgtype not in CUSTOM_TYPES:
        raise WxError(40008)
    content = body.get(msgtype)
    if not isinstance(content, dict):
        raise WxError(47001)
    if msgtype == "text" and not str(content.get("content") or ""):
        raise WxError(44004)
    if msgtype in ("image", "voice", "mpnews"):
        _check_media(platform, content.get("media_id"))
    if msgtype == "video":
        _check_media(platform, content.get("media_id"))
    if msgtype == "music" and not content.get("thumb_media_id"):
        raise WxError(40007)
    if msgtype == "news":
        articles = content.get("articles")
        if not isinstance(articles, list) or not articles:
            raise WxError(44003)
        if len(articles) > 1:
            raise WxError(45008)
    if msgtype == "msgmenu" and not isinstance(content.get("list"), list):
        raise WxError(47001)
    return msgtype, content


def _consume_window(platform: Platform, account: SimAccount, user: SimUser) -> None:
    if not account.limits.enforce_window:
        return
    now = platform.now()
    user.grants = [g for g in user.grants if g.expires_at > now]
    if not user.grants:
        raise WxError(45015)
    usable = sorted(
        (g for g in user.grants if g.remaining is None or g.remaining > 0), key=lambda g: g.expires_at
    )
    if not usable:
        raise WxError(45047)
    if usable[0].remaining is not None:
        usable[0].remaining -= 1


@router.post("/cgi-bin/message/custom/send")
async def custom_send(request: Request) -> JSONResponse:
    account = await gate(request, "custom_send")
    platform = platform_of(request)
    body = await json_body(request)
    user = _user(account, body.get("touser"))
    msgtype, content = _validate_custom(platform, body)
    _consume_window(platform, account, user)
    key = request.headers.get(IDEMPOTENCY_HEADER)
    shown = dict(content)
    if isinstance(body.get("customservice"), dict):
        shown["kf_account"] = body["customservice"].get("kf_account")
    platform.deliver_record(
        account, openid=user.openid, api="custom_send", kind=msgtype, content=content, idempotency_key=key
    )
    platform.converse(account, user.openid, direction="out", via="custom", kind=msgtype, content=shown)
    return ok()


@router.post("/cgi-bin/message/custom/typing")
async def custom_typing(request: Request) -> JSONResponse:
    account = await gate(request, "custom_typing")
    body = await json_body(request)
    user = _user(account, body.get("touser"))
    if body.get("command") not in ("Typing", "CancelTyping"):
        raise WxError(40097)
    platform_of(request).converse(
        account,
        user.openid,
        direction="system",
        via="typing",
        kind="typing",
        content={"on": body["command"] == "Typing"},
    )
    return ok()


@router.post("/cgi-bin/message/template/send")
async def template_send(request: Request) -> JSONResponse:
    account = await gate(request, "template_send")
    platform = platform_of(request)
    body = await json_body(request)
    user = _user(account, body.get("touser"))
    template_id = str(body.get("template_id") or "")
    if template_id not in account.templates:
        raise WxError(40037)
    data = body.get("data")
    if not isinstance(data, dict):
        raise WxError(47001)
    for name, value in data.items():
        if not isinstance(value, dict) or "value" not in value:
            raise WxError(47001)
        if str(name).startswith("thing") and len(str(value["value"])) > 20:
            raise WxError(47003, f"argument invalid! data.{name}.value invalid")
    msgid = platform.job_id()
    status = "failed:user block" if user.blocked_templates else "success"
    content = {
        k: body[k] for k in ("template_id", "url", "miniprogram", "data", "client_msg_id") if k in body
    }
    key = request.headers.get(IDEMPOTENCY_HEADER)
    platform.deliver_record(
        account,
        openid=user.openid,
        api="template_send",
        kind="template",
        content=content,
        idempotency_key=key,
        msgid=msgid,
        status="delivered" if status == "success" else status,
    )
    if status == "success":
        platform.converse(
            account, user.openid, direction="out", via="template", kind="template", content=content
        )
    _job_event(
        request, account, user.openid, {"Event": "TEMPLATESENDJOBFINISH", "MsgID": msgid, "Status": status}
    )
    return JSONResponse({"errcode": 0, "errmsg": "ok", "msgid": msgid})


@router.get("/cgi-bin/template/get_all_private_template")
async def template_list(request: Request) -> JSONResponse:
    account = await gate(request, "template_list")
    return JSONResponse({"template_list": list(account.templates.values())})


@router.post("/cgi-bin/template/del_private_template")
async def template_delete(request: Request) -> JSONResponse:
    account = await gate(request, "template_delete")
    body = await json_body(request)
    if account.templates.pop(str(body.get("template_id") or ""), None) is None:
        raise WxError(40037)
    return ok()


def _job_event(request: Request, account: SimAccount, openid: str, fields: dict[str, Any]) -> None:
    """The platform reports a job's outcome later, as an event push."""
    if not (account.limits.push_job_events and account.webhook_url):
        return
    schedule = request.app.state.schedule_push
    schedule(account, openid, fields, account.limits.job_event_delay_s)


@router.post("/cgi-bin/message/mass/sendall")
@router.post("/cgi-bin/message/mass/send")
async def mass_send(request: Request) -> JSONResponse:
    account = await gate(request, "mass_send")
    platform = platform_of(request)
    body = await json_body(request)
    msgtype = str(body.get("msgtype") or "")
    if msgtype not in MASS_TYPES or not isinstance(body.get(msgtype), dict):
        raise WxError(40008)
    client_id = str(body.get("clientmsgid") or "")
    if client_id and client_id in account.mass_client_ids:
        raise WxError(45065, msg_id=account.mass_client_ids[client_id])
    if request.url.path.endswith("/send"):
        touser = body.get("touser")
        if not isinstance(touser, list) or not 2 <= len(touser) <= 10_000:
            raise WxError(40130)
        recipients = [account.users[o] for o in map(str, touser) if o in account.users]
    else:
        filt = body.get("filter") or {}
        if not isinstance(filt, dict):
            raise WxError(47001)
        if filt.get("is_to_all"):
            recipients = list(account.users.values())
        else:
            tag_id = int(filt.get("tag_id") or 0)
            if tag_id not in account.tags:
                raise WxError(45159)
            recipients = [u for u in account.users.values() if tag_id in u.tagids]
    msg_id = platform.job_id()
    if client_id:
        account.mass_client_ids[client_id] = msg_id
    key = request.headers.get(IDEMPOTENCY_HEADER)
    sent = 0
    for user in recipients:
        if not user.subscribed:
            continue
        sent += 1
        platform.deliver_record(
            account,
            openid=user.openid,
            api="mass_send",
            kind=msgtype,
            content=body[msgtype],
            idempotency_key=f"{key}:{user.openid}" if key else None,
            msgid=msg_id,
        )
        platform.converse(
            account, user.openid, direction="out", via="mass", kind=msgtype, content=body[msgtype]
        )
    _job_event(
        request,
        account,
        account.system_openid,
        {
            "Event": "MASSSENDJOBFINISH",
            "MsgID": msg_id,
            "Status": "send success",
            "TotalCount": len(recipients),
            "FilterCount": sent,
            "SentCount": sent,
            "ErrorCount": 0,
        },
    )
    return JSONResponse(
        {"errcode": 0, "errmsg": "send job submission success", "msg_id": msg_id, "msg_data_id": msg_id + 1}
    )


# --- menu ---------------------------------------------------------------------------------------


def _validate_button(button: Any, *, sub: bool) -> dict[str, Any]:
    if not isinstance(button, dict):
        raise WxError(47001)
    name = str(button.get("name") or "")
    if not name or len(name.encode()) > (40 if sub else 16):
        raise WxError(40025 if sub else 40018)
    children = button.get("sub_button")
    if children and not sub:
        if not isinstance(children, list) or not 1 <= len(children) <= 5:
            raise WxError(40023)
        return {"name": name, "sub_button": [_validate_button(c, sub=True) for c in children]}
    kind = str(button.get("type") or "")
    if kind not in MENU_TYPES:
        raise WxError(40024 if sub else 40017)
    if kind == "view" or kind == "miniprogram":
        url = str(button.get("url") or "")
        if not url or len(url.encode()) > 256:
            raise WxError(40027 if sub else 40020)
    elif kind in ("media_id", "view_limited", "article_id", "article_view_limited"):
        pass
    else:
        key = str(button.get("key") or "")
        if not key or len(key.encode()) > 128:
            raise WxError(40026 if sub else 40019)
    cleaned = {k: v for k, v in button.items() if k != "sub_button"}
    cleaned["sub_button"] = []
    return cleaned


@router.post("/cgi-bin/menu/create")
async def menu_create(request: Request) -> JSONResponse:
    account = await gate(request, "menu_create")
    body = await json_body(request)
    buttons = body.get("button")
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
        raise WxError(40016)
    account.menu = {"button": [_validate_button(b, sub=False) for b in buttons]}
    return ok()


@router.get("/cgi-bin/menu/get")
async def menu_get(request: Request) -> JSONResponse:
    account = await gate(request, "menu_get")
    if account.menu is None:
        raise WxError(46003)
    return JSONResponse({"menu": account.menu})


@router.get("/cgi-bin/menu/delete")
async def menu_delete(request: Request) -> JSONResponse:
    account = await gate(request, "menu_delete")
    account.menu = None
    return ok()


# --- QR codes -----------------------------------------------------------------------------------


@router.post("/cgi-bin/qrcode/create")
async def qrcode_create(request: Request) -> JSONResponse:
    account = await gate(request, "qrcode_create")
    platform = platform_of(request)
    body = await json_body(request)
    action = str(body.get("action_name") or "")
    scene = _object(_object(body, "action_info"), "scene")
    permanent = action.startswith("QR_LIMIT")
    value: int | str
    if action in ("QR_SCENE", "QR_LIMIT_SCENE"):
        try:
            number = int(scene.get("scene_id") or 0)
        except (TypeError, ValueError) as exc:
            raise WxError(40053) from exc
        if number == 0 or not -(2**31) <= number < 2**32 or (permanent and not 1 <= number <= 100_000):
            raise WxError(40053)
        value = number
    elif action in ("QR_STR_SCENE", "QR_LIMIT_STR_SCENE"):
        value = str(scene.get("scene_str") or "")
        if not 1 <= len(value) <= 64:
            raise WxError(40053)
    else:
        raise WxError(40053)
    expire = None if permanent else min(int(body.get("expire_seconds") or 60), 2_592_000)
    ticket = base64.b64encode(secrets.token_bytes(48)).decode()
    url = f"http://weixin.qq.com/q/{secrets.token_urlsafe(18)}"
    platform.qrcodes[ticket] = {
        "app_id": account.app_id,
        "scene": value,
        "permanent": permanent,
        "expires_at": None if expire is None else platform.now() + expire,
        "url": url,
    }
    result: dict[str, Any] = {"ticket": ticket, "url": url}
    if expire is not None:
        result["expire_seconds"] = expire
    return JSONResponse(result)


@router.get("/cgi-bin/showqrcode")
async def showqrcode(request: Request, ticket: str = "") -> Response:
    platform = platform_of(request)
    qr = platform.qrcodes.get(ticket)
    if qr is None or (qr["expires_at"] is not None and platform.now() > qr["expires_at"]):
        return Response("invalid or expired ticket", status_code=404, media_type="text/plain")
    # Not a scannable code: a picture that says which scene it stands for.
    cells = "".join(
        f'<rect x="{20 + (i % 9) * 20}" y="{20 + (i // 9) * 20}" width="18" height="18"/>'
        for i, bit in enumerate(secrets.token_bytes(81))
        if bit & 1
    )
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="220" height="260" viewBox="0 0 220 260">'
        '<rect width="220" height="260" fill="#fff"/>'
        f'<g fill="#111">{cells}</g>'
        f'<text x="110" y="240" font-family="sans-serif" font-size="14" text-anchor="middle">scene {escape(str(qr["scene"]))}</text>'
        "</svg>"
    )
    return Response(svg, media_type="image/svg+xml")


# --- users --------------------------------------------------------------------------------------


def _user_info(user: SimUser) -> dict[str, Any]:
    if not user.subscribed:
        info: dict[str, Any] = {"subscribe": 0, "openid": user.openid}
        if user.unionid:
            info["unionid"] = user.unionid
        return info
    # Since 2021-12-27 the platform no longer returns nickname or avatar here.
    info = {
        "subscribe": 1,
        "openid": user.openid,
        "subscribe_time": user.subscribe_time,
        "remark": user.remark,
        "groupid": 0,
        "tagid_list": list(user.tagids),
        "subscribe_scene": user.subscribe_scene,
        "qr_scene": user.qr_scene,
        "qr_scene_str": user.qr_scene_str,
    }
    if user.unionid:
        info["unionid"] = user.unionid
    return info


@router.get("/cgi-bin/user/info")
async def user_info(request: Request) -> JSONResponse:
    account = await gate(request, "user_info")
    user = _user(account, request.query_params.get("openid"), subscribed=False)
    return JSONResponse(_user_info(user))


@router.post("/cgi-bin/user/info/batchget")
async def user_info_batch(request: Request) -> JSONResponse:
    account = await gate(request, "user_info")
    body = await json_body(request)
    wanted = body.get("user_list")
    if not isinstance(wanted, list) or not 1 <= len(wanted) <= 100:
        raise WxError(40032)
    users = [
        _user(account, item.get("openid") if isinstance(item, dict) else None, subscribed=False)
        for item in wanted
    ]
    return JSONResponse({"user_info_list": [_user_info(u) for u in users]})


def _openid_page(account: SimAccount, candidates: list[SimUser], next_openid: str) -> dict[str, Any]:
    start = 0
    if next_openid:
        anchor = account.users.get(next_openid)
        if anchor is None:
            raise WxError(40003)
        start = anchor.seq + 1
    page = [u.openid for u in candidates if u.seq >= start][:10_000]
    if not page:
        return {"total": len(candidates), "count": 0, "next_openid": ""}
    return {"total": len(candidates), "count": len(page), "data": {"openid": page}, "next_openid": page[-1]}


@router.get("/cgi-bin/user/get")
async def user_get(request: Request) -> JSONResponse:
    account = await gate(request, "user_get")
    followers = [account.users[o] for o in account.order if account.users[o].subscribed]
    return JSONResponse(_openid_page(account, followers, request.query_params.get("next_openid") or ""))


@router.post("/cgi-bin/user/info/updateremark")
async def update_remark(request: Request) -> JSONResponse:
    account = await gate(request, "update_remark")
    body = await json_body(request)
    user = _user(account, body.get("openid"))
    remark = str(body.get("remark") or "")
    if len(remark) >= 30:
        raise WxError(40097)
    user.remark = remark
    return ok()


# --- tags ---------------------------------------------------------------------------------------


def _tag_id(account: SimAccount, tag: Any) -> int:
    try:
        tag_id = int(tag)
    except (TypeError, ValueError) as exc:
        raise WxError(45159) from exc
    if tag_id not in account.tags:
        raise WxError(45159)
    return tag_id


def _tag_name(account: SimAccount, name: Any, *, exclude: int | None = None) -> str:
    text = str(name or "")
    if not text:
        raise WxError(45157)
    if len(text) > 30:
        raise WxError(45158)
    if any(n == text and i != exclude for i, n in account.tags.items()):
        raise WxError(45157)
    return text


@router.post("/cgi-bin/tags/create")
async def tags_create(request: Request) -> JSONResponse:
    account = await gate(request, "tags")
    body = await json_body(request)
    tag = _object(body, "tag")
    name = _tag_name(account, tag.get("name"))
    if len(account.tags) >= 100:
        raise WxError(45056)
    tag_id = account.next_tag_id
    account.next_tag_id += 1
    account.tags[tag_id] = name
    return JSONResponse({"tag": {"id": tag_id, "name": name}})


@router.get("/cgi-bin/tags/get")
async def tags_get(request: Request) -> JSONResponse:
    account = await gate(request, "tags")
    counts = dict.fromkeys(account.tags, 0)
    for user in account.users.values():
        for tag_id in user.tagids:
            if tag_id in counts:
                counts[tag_id] += 1
    return JSONResponse(
        {"tags": [{"id": i, "name": n, "count": counts[i]} for i, n in sorted(account.tags.items())]}
    )


@router.post("/cgi-bin/tags/update")
async def tags_update(request: Request) -> JSONResponse:
    account = await gate(request, "tags")
    body = await json_body(request)
    tag = _object(body, "tag")
    tag_id = _tag_id(account, tag.get("id"))
    if tag_id in (0, 1, 2):
        raise WxError(45058)
    account.tags[tag_id] = _tag_name(account, tag.get("name"), exclude=tag_id)
    return ok()


@router.post("/cgi-bin/tags/delete")
async def tags_delete(request: Request) -> JSONResponse:
    account = await gate(request, "tags")
    body = await json_body(request)
    tag = _object(body, "tag")
    tag_id = _tag_id(account, tag.get("id"))
    if tag_id in (0, 1, 2):
        raise WxError(45058)
    members = [u for u in account.users.values() if tag_id in u.tagids]
    if len(members) > 100_000:
        raise WxError(45057)
    for user in members:
        user.tagids.remove(tag_id)
    del account.tags[tag_id]
    return ok()


async def _members(request: Request) -> tuple[SimAccount, int, list[SimUser]]:
    account = await gate(request, "tags")
    body = await json_body(request)
    openids = body.get("openid_list")
    if not isinstance(openids, list) or not 1 <= len(openids) <= 50:
        raise WxError(40032)
    tag_id = _tag_id(account, body.get("tagid"))
    return account, tag_id, [_user(account, o) for o in openids]


@router.post("/cgi-bin/tags/members/batchtagging")
async def tags_tag(request: Request) -> JSONResponse:
    _account, tag_id, users = await _members(request)
    if any(len(u.tagids) >= 20 and tag_id not in u.tagids for u in users):
        raise WxError(45059)
    for user in users:
        if tag_id not in user.tagids:
            user.tagids.append(tag_id)
    return ok()


@router.post("/cgi-bin/tags/members/batchuntagging")
async def tags_untag(request: Request) -> JSONResponse:
    _account, tag_id, users = await _members(request)
    for user in users:
        if tag_id in user.tagids:
            user.tagids.remove(tag_id)
    return ok()


@router.post("/cgi-bin/tags/getidlist")
async def tags_of_user(request: Request) -> JSONResponse:
    account = await gate(request, "tags")
    body = await json_body(request)
    user = _user(account, body.get("openid"))
    return JSONResponse({"tagid_list": list(user.tagids)})


@router.post("/cgi-bin/user/tag/get")
async def users_of_tag(request: Request) -> JSONResponse:
    account = await gate(request, "tags")
    body = await json_body(request)
    tag_id = _tag_id(account, body.get("tagid"))
    members = [account.users[o] for o in account.order if tag_id in account.users[o].tagids]
    page = _openid_page(account, members, str(body.get("next_openid") or ""))
    page.pop("total", None)
    return JSONResponse(page)


# --- media --------------------------------------------------------------------------------------


@router.post("/cgi-bin/media/upload")
async def media_upload(request: Request) -> JSONResponse:
    account = await gate(request, "media_upload")
    platform = platform_of(request)
    kind = request.query_params.get("type", "")
    if kind not in MEDIA_LIMITS:
        raise WxError(40004)
    form = await request.form()
    upload = form.get("media")
    if not isinstance(upload, UploadFile):
        raise WxError(41005)
    content = await upload.read()
    if not content:
        raise WxError(41005)
    if len(content) > MEDIA_LIMITS[kind]:
        raise WxError(40009 if kind == "image" else 40006)
    media_id = store_media(
        platform,
        kind=kind,
        content=content,
        content_type=upload.content_type or "application/octet-stream",
        filename=upload.filename or "media",
        app_id=account.app_id,
    )
    return JSONResponse({"type": kind, "media_id": media_id, "created_at": int(platform.now())})


@router.get("/cgi-bin/media/get")
async def media_get(request: Request) -> Response:
    await gate(request, "media_get")
    platform = platform_of(request)
    media_id = request.query_params.get("media_id", "")
    _check_media(platform, media_id)
    media = platform.media[media_id]
    if media["type"] == "video":
        return JSONResponse({"video_url": f"{request.base_url}_sandbox/media/{media_id}"})
    return Response(
        media["content"],
        media_type=media["content_type"],
        headers={"Content-Disposition": f'attachment; filename="{media["filename"]}"'},
    )


# --- OAuth2 web authorization -------------------------------------------------------------------


def _with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


@router.get("/connect/oauth2/authorize", response_model=None)
async def oauth_authorize(request: Request) -> Response:
    """Stands in for WeChat's consent screen; ``openid`` (a simulator extension) picks the user."""
    platform = platform_of(request)
    q = request.query_params
    account = platform.account(q.get("appid", ""))
    redirect_uri, scope, state = q.get("redirect_uri", ""), q.get("scope", ""), q.get("state", "")
    if account is None or not redirect_uri or q.get("response_type") != "code":
        return HTMLResponse("<h1>参数错误 / invalid request</h1>", status_code=400)
    if scope not in ("snsapi_base", "snsapi_userinfo"):
        return HTMLResponse("<h1>scope 参数错误 / invalid scope</h1>", status_code=400)
    openid = q.get("openid")
    if openid:
        if openid not in account.users:
            return HTMLResponse("<h1>unknown user</h1>", status_code=404)
        code = secrets.token_urlsafe(24)
        platform.oauth_codes[code] = {
            "app_id": account.app_id,
            "openid": openid,
            "scope": scope,
            "expires_at": platform.now() + OAUTH_CODE_LIFETIME_S,
            "used": False,
        }
        return RedirectResponse(_with_query(redirect_uri, code=code, state=state), status_code=302)
    rows = "".join(
        f'<li><a href="{escape(_with_query(str(request.url), openid=u.openid))}">{escape(u.nickname)}'
        f" <small>{escape(u.openid)}</small></a></li>"
        for u in list(account.users.values())[:200]
    )
    page = (
        '<!doctype html><meta charset="utf-8"><meta name="viewport" content="width=device-width">'
        "<title>微信授权</title><style>body{font-family:sans-serif;max-width:420px;margin:2em auto}"
        "li{margin:.5em 0}a{color:#07c160}</style>"
        f"<h2>{escape(account.name)} 申请获得以下权限</h2>"
        f"<p>{'获得你的公开信息（昵称、头像）' if scope == 'snsapi_userinfo' else '获取你的身份标识'}</p>"
        f"<p>Simulator: who is signing in?</p><ul>{rows}</ul>"
    )
    return HTMLResponse(page)


def _oauth_token(platform: Platform, account: SimAccount, openid: str, scope: str) -> dict[str, Any]:
    access, refresh = secrets.token_urlsafe(48), secrets.token_urlsafe(48)
    now = platform.now()
    platform.oauth_tokens[access] = {
        "app_id": account.app_id,
        "openid": openid,
        "scope": scope,
        "expires_at": now + 7200,
    }
    platform.oauth_refresh[refresh] = {
        "app_id": account.app_id,
        "openid": openid,
        "scope": scope,
        "expires_at": now + 30 * 86400,
    }
    result: dict[str, Any] = {
        "access_token": access,
        "expires_in": 7200,
        "refresh_token": refresh,
        "openid": openid,
        "scope": scope,
    }
    user = account.users.get(openid)
    if user is not None and user.unionid:
        result["unionid"] = user.unionid
    return result


@router.get("/sns/oauth2/access_token")
async def oauth_access_token(request: Request) -> JSONResponse:
    q = request.query_params
    account = await gate_app(request, "sns", q.get("appid"), q.get("secret") or "")
    platform = platform_of(request)
    if q.get("grant_type") != "authorization_code":
        raise WxError(40002)
    grant = platform.oauth_codes.get(q.get("code", ""))
    if grant is None or grant["app_id"] != account.app_id or platform.now() > grant["expires_at"]:
        raise WxError(40029)
    if grant["used"]:
        raise WxError(40163)
    grant["used"] = True
    return JSONResponse(_oauth_token(platform, account, grant["openid"], grant["scope"]))


@router.get("/sns/oauth2/refresh_token")
async def oauth_refresh(request: Request) -> JSONResponse:
    q = request.query_params
    account = await gate_app(request, "sns", q.get("appid"), None)
    platform = platform_of(request)
    grant = platform.oauth_refresh.get(q.get("refresh_token", ""))
    if grant is None or grant["app_id"] != account.app_id or platform.now() > grant["expires_at"]:
        raise WxError(40030, "invalid refresh_token")
    return JSONResponse(_oauth_token(platform, account, grant["openid"], grant["scope"]))


def _sns_grant(request: Request) -> dict[str, Any]:
    platform = platform_of(request)
    q = request.query_params
    grant = platform.oauth_tokens.get(q.get("access_token", ""))
    if grant is None:
        raise WxError(40001)
    if platform.now() > grant["expires_at"]:
        raise WxError(42001)
    if grant["openid"] != q.get("openid"):
        raise WxError(40003)
    return grant


@router.get("/sns/userinfo")
async def oauth_userinfo(request: Request) -> JSONResponse:
    platform = platform_of(request)
    grant = _sns_grant(request)
    account = platform.accounts[grant["app_id"]]
    await gate_app(request, "sns", account.app_id, None)
    if grant["scope"] != "snsapi_userinfo":
        raise WxError(48001)
    user = account.users[grant["openid"]]
    # Since 2021-10-20 sex is 0 and the region fields are empty.
    info: dict[str, Any] = {
        "openid": user.openid,
        "nickname": user.nickname,
        "sex": 0,
        "province": "",
        "city": "",
        "country": "",
        "headimgurl": user.headimgurl,
        "privilege": [],
    }
    if user.unionid:
        info["unionid"] = user.unionid
    return JSONResponse(info)


@router.get("/sns/auth")
async def oauth_check(request: Request) -> JSONResponse:
    _sns_grant(request)
    return ok()
