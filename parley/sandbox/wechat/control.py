"""The simulator's own control API under ``/_sandbox/`` (JSON): set up accounts and users,
make users act, configure limits and faults, and read what the platform saw.
"""

from __future__ import annotations

import secrets
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from parley.channels.wechat.xml import build_xml
from parley.sandbox.wechat.actions import ActionError, build_action
from parley.sandbox.wechat.api import platform_of
from parley.sandbox.wechat.push import UNAVAILABLE_NOTICE, deliver, verify_url
from parley.sandbox.wechat.state import Fault, Platform, SimAccount, SimUser, random_openid

router = APIRouter(prefix="/_sandbox")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AccountIn(_In):
    app_id: str = Field(pattern=r"^wx[0-9a-fA-F]{16}$")
    app_secret: str = Field(min_length=1)
    token: str = Field(pattern=r"^[A-Za-z0-9]{3,32}$")
    encoding_aes_key: str | None = Field(default=None, pattern=r"^[A-Za-z0-9]{43}$")
    encryption_mode: Literal["plain", "compatible", "safe"] = "plain"
    original_id: str | None = None
    webhook_url: str | None = None
    name: str | None = None

    @field_validator("encoding_aes_key", "original_id", "webhook_url", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return value or None


class UserIn(_In):
    nickname: str | None = None
    openid: str | None = None
    unionid: str | None = None
    subscribed: bool = True
    subscribe_scene: str = "ADD_SCENE_SEARCH"
    remark: str = ""
    headimgurl: str = ""
    blocked_templates: bool = False
    count: int | None = Field(default=None, ge=1, le=1_000_000)


class UserPatch(_In):
    nickname: str | None = None
    unionid: str | None = None
    remark: str | None = None
    blocked_templates: bool | None = None


class FaultIn(_In):
    count: int = Field(default=1, ge=1)
    api: str | None = None
    errcode: int | None = None
    http_status: int | None = Field(default=None, ge=400, le=599)
    delay_s: float = Field(default=0.0, ge=0)


class LimitsIn(_In):
    daily_quotas: dict[str, int] | None = None
    rate_limit_per_s: float | None = Field(default=None, ge=0)
    rate_limit_errcode: int | None = None
    token_lifetime_s: int | None = Field(default=None, ge=1)
    delay_s: float | None = Field(default=None, ge=0)
    fail_next: FaultIn | None = None
    faults: list[FaultIn] | None = None
    clear_faults: bool = False
    enforce_window: bool | None = None
    window_hours: float | None = Field(default=None, gt=0)
    window_messages: int | None = Field(default=None, ge=0)
    unlimited_window_messages: bool = False
    webhook_timeout_s: float | None = Field(default=None, gt=0)
    webhook_attempts: int | None = Field(default=None, ge=1, le=10)
    retry_delay_s: float | None = Field(default=None, ge=0)
    push_job_events: bool | None = None
    job_event_delay_s: float | None = Field(default=None, ge=0)
    reset_usage: bool = False


class TokenInvalidateIn(_In):
    errcode: Literal[40001, 42001] = 42001


class ClockIn(_In):
    advance_s: float = 0.0
    reset: bool = False


def _account(platform: Platform, app_id: str) -> SimAccount:
    account = platform.account(app_id)
    if account is None:
        raise HTTPException(404, f"no account {app_id}")
    return account


def _user(account: SimAccount, openid: str) -> SimUser:
    user = account.users.get(openid)
    if user is None:
        raise HTTPException(404, f"no user {openid} in {account.app_id}")
    return user


# --- accounts -----------------------------------------------------------------------------------


@router.post("/accounts")
async def register_account(data: AccountIn, request: Request) -> dict[str, Any]:
    platform = platform_of(request)
    if data.encryption_mode != "plain" and not data.encoding_aes_key:
        raise HTTPException(422, "encoding_aes_key is required unless encryption_mode is plain")
    existing = platform.account(data.app_id)
    original_id = data.original_id or (existing.original_id if existing else "gh_" + secrets.token_hex(6))
    fields: dict[str, Any] = {
        "app_secret": data.app_secret,
        "token": data.token,
        "encoding_aes_key": data.encoding_aes_key,
        "encryption_mode": data.encryption_mode,
        "original_id": original_id,
        "webhook_url": data.webhook_url,
        "name": data.name or (existing.name if existing else f"Sandbox OA {data.app_id[-4:]}"),
    }
    if existing is None:
        platform.accounts[data.app_id] = SimAccount(app_id=data.app_id, **fields)
    else:
        for key, value in fields.items():
            setattr(existing, key, value)
    return platform.accounts[data.app_id].public()


@router.get("/accounts")
async def list_accounts(request: Request) -> list[dict[str, Any]]:
    return [a.public() for a in platform_of(request).accounts.values()]


@router.get("/accounts/{app_id}")
async def get_account(app_id: str, request: Request) -> dict[str, Any]:
    return _account(platform_of(request), app_id).public()


@router.delete("/accounts/{app_id}", status_code=204)
async def delete_account(app_id: str, request: Request) -> Response:
    platform = platform_of(request)
    _account(platform, app_id)
    del platform.accounts[app_id]
    return Response(status_code=204)


@router.get("/accounts/{app_id}/menu")
async def get_menu(app_id: str, request: Request) -> dict[str, Any]:
    return {"menu": _account(platform_of(request), app_id).menu}


@router.post("/accounts/{app_id}/limits")
async def set_limits(app_id: str, data: LimitsIn, request: Request) -> dict[str, Any]:
    account = _account(platform_of(request), app_id)
    limits = account.limits
    if data.daily_quotas is not None:
        limits.daily_quotas.update(data.daily_quotas)
    for name in (
        "rate_limit_errcode",
        "token_lifetime_s",
        "delay_s",
        "enforce_window",
        "window_hours",
        "webhook_timeout_s",
        "webhook_attempts",
        "retry_delay_s",
        "push_job_events",
        "job_event_delay_s",
    ):
        value = getattr(data, name)
        if value is not None:
            setattr(limits, name, value)
    if "rate_limit_per_s" in data.model_fields_set:
        limits.rate_limit_per_s = data.rate_limit_per_s or None
    if data.window_messages is not None:
        limits.window_messages = data.window_messages
    if data.unlimited_window_messages:
        limits.window_messages = None
    if data.clear_faults:
        limits.faults.clear()
    for fault in [*(data.faults or []), *([data.fail_next] if data.fail_next else [])]:
        limits.faults.append(Fault(**fault.model_dump()))
    if data.reset_usage:
        account.usage.clear()
        account.recent_calls.clear()
    return limits.public()


@router.post("/accounts/{app_id}/tokens/invalidate")
async def invalidate_tokens(app_id: str, data: TokenInvalidateIn, request: Request) -> dict[str, Any]:
    """Makes every token of the account fail now: 42001 (expired) or 40001 (superseded)."""
    platform = platform_of(request)
    _account(platform, app_id)
    now = platform.now()
    count = 0
    for token in platform.tokens.values():
        if token.app_id == app_id:
            count += 1
            if data.errcode == 42001:
                token.expires_at = min(token.expires_at, now)
            else:
                token.revoked_at = now
    return {"invalidated": count, "errcode": data.errcode}


@router.post("/accounts/{app_id}/verify_url")
async def verify_account_url(app_id: str, request: Request) -> dict[str, Any]:
    platform = platform_of(request)
    return await verify_url(platform, request.app.state.webhook_http(), _account(platform, app_id))


# --- users --------------------------------------------------------------------------------------


@router.post("/accounts/{app_id}/users")
async def create_users(app_id: str, data: UserIn, request: Request) -> dict[str, Any]:
    platform = platform_of(request)
    account = _account(platform, app_id)
    now = int(platform.now())
    common = {
        "subscribed": data.subscribed,
        "subscribe_time": now if data.subscribed else 0,
        "subscribe_scene": data.subscribe_scene,
        "remark": data.remark,
        "headimgurl": data.headimgurl,
        "blocked_templates": data.blocked_templates,
    }
    if data.count is not None:
        if data.openid:
            raise HTTPException(422, "give either openid or count")
        first = len(account.order)
        created = []
        for i in range(data.count):
            user = platform.add_user(
                account,
                openid=random_openid(),
                nickname=f"{data.nickname or 'Fan'} {first + i + 1}",
                **common,
            )
            created.append(user.openid)
        return {
            "created": len(created),
            "total": len(account.users),
            "first": created[0],
            "last": created[-1],
        }
    nickname = data.nickname or f"Fan {len(account.order) + 1}"
    user = platform.add_user(account, openid=data.openid, nickname=nickname, unionid=data.unionid, **common)
    return user.public(platform.now())


@router.get("/accounts/{app_id}/users")
async def list_users(app_id: str, request: Request, offset: int = 0, limit: int = 200) -> dict[str, Any]:
    platform = platform_of(request)
    account = _account(platform, app_id)
    openids = account.order[offset : offset + max(0, min(limit, 10_000))]
    now = platform.now()
    return {"total": len(account.order), "users": [account.users[o].public(now) for o in openids]}


@router.get("/accounts/{app_id}/users/{openid}")
async def get_user(app_id: str, openid: str, request: Request) -> dict[str, Any]:
    platform = platform_of(request)
    return _user(_account(platform, app_id), openid).public(platform.now())


@router.patch("/accounts/{app_id}/users/{openid}")
async def patch_user(app_id: str, openid: str, data: UserPatch, request: Request) -> dict[str, Any]:
    platform = platform_of(request)
    user = _user(_account(platform, app_id), openid)
    for key, value in data.model_dump(exclude_unset=True).items():
        setattr(user, key, value)
    return user.public(platform.now())


@router.get("/accounts/{app_id}/users/{openid}/conversation")
async def conversation(app_id: str, openid: str, request: Request, after: int = 0) -> dict[str, Any]:
    platform = platform_of(request)
    account = _account(platform, app_id)
    user = _user(account, openid)
    entries = [e for e in account.conversations.get(openid, []) if e["id"] > after]
    return {"user": user.public(platform.now()), "menu": account.menu, "entries": entries}


@router.post("/accounts/{app_id}/users/{openid}/actions")
async def act(app_id: str, openid: str, action: dict[str, Any], request: Request) -> JSONResponse:
    """The user does something; the platform pushes it to the account's server and shows the reply."""
    platform = platform_of(request)
    account = _account(platform, app_id)
    user = _user(account, openid)
    try:
        fields, shown = build_action(platform, account, user, action, base_url=str(request.base_url))
    except ActionError as exc:
        raise HTTPException(exc.status, str(exc)) from exc
    plain = fields.pop("__raw__", None) or build_xml(fields)
    if shown is not None:
        kind = str(action.get("type"))
        platform.converse(account, openid, direction="in", via="user", kind=kind, content=shown)
    summary: dict[str, Any] = {
        "action": action.get("type"),
        "msg_id": str(fields["MsgId"]) if "MsgId" in fields else None,
        "create_time": fields.get("CreateTime"),
        "fields": {k: (str(v) if k == "MsgId" else v) for k, v in fields.items()},
    }
    if action.get("wait") is False:
        request.app.state.spawn(_push_and_show(request, account, openid, plain))
        return JSONResponse({**summary, "queued": True})
    outcome = await _push_and_show(request, account, openid, plain)
    return JSONResponse({**summary, "queued": False, **outcome})


async def _push_and_show(request: Request, account: SimAccount, openid: str, plain: str) -> dict[str, Any]:
    platform = platform_of(request)
    result = await deliver(platform, request.app.state.webhook_http(), account, plain, openid=openid)
    if result.reply is not None:
        reply = dict(result.reply)
        platform.converse(
            account, openid, direction="out", via="passive", kind=reply.pop("type"), content=reply
        )
    elif result.reply_error is not None and account.webhook_url:
        platform.converse(
            account,
            openid,
            direction="system",
            via="platform",
            kind="notice",
            content={"text": UNAVAILABLE_NOTICE},
        )
    return result.public()


# --- what the platform saw ----------------------------------------------------------------------


@router.get("/record")
async def get_record(
    request: Request,
    app_id: str | None = None,
    openid: str | None = None,
    since: float | None = None,
    after: int | None = None,
) -> dict[str, Any]:
    entries = [
        e
        for e in platform_of(request).record
        if (app_id is None or e["app_id"] == app_id)
        and (openid is None or e["openid"] == openid)
        and (since is None or e["ts"] >= since)
        and (after is None or e["seq"] > after)
    ]
    return {
        "count": len(entries),
        "duplicates": sum(1 for e in entries if e["duplicate"]),
        "entries": entries,
    }


@router.delete("/record", status_code=204)
async def reset_record(request: Request) -> Response:
    platform = platform_of(request)
    platform.record.clear()
    platform.seen_keys.clear()
    platform.stats_per_second.clear()
    return Response(status_code=204)


@router.get("/calls")
async def get_calls(request: Request, app_id: str | None = None, api: str | None = None) -> dict[str, Any]:
    calls = [
        c
        for c in platform_of(request).calls
        if (app_id is None or c["app_id"] == app_id) and (api is None or c["api"] == api)
    ]
    return {"count": len(calls), "calls": calls}


@router.get("/stats")
async def get_stats(request: Request) -> dict[str, Any]:
    platform = platform_of(request)
    return {
        "accounts": len(platform.accounts),
        "users": sum(len(a.users) for a in platform.accounts.values()),
        "api_calls": dict(platform.stats_calls),
        "errors": {str(k): v for k, v in platform.stats_errors.items()},
        "deliveries": len(platform.record),
        "duplicates": sum(1 for e in platform.record if e["duplicate"]),
        "deliveries_per_second": {str(k): v for k, v in sorted(platform.stats_per_second.items())},
        "webhook": dict(platform.stats_webhook),
    }


@router.get("/clock")
async def get_clock(request: Request) -> dict[str, float]:
    platform = platform_of(request)
    return {"now": platform.now(), "offset_s": platform.clock_offset_s}


@router.post("/clock")
async def move_clock(data: ClockIn, request: Request) -> dict[str, float]:
    """Moves the simulated clock forward: windows close, tokens and codes expire, quotas reset."""
    platform = platform_of(request)
    platform.clock_offset_s = 0.0 if data.reset else platform.clock_offset_s + data.advance_s
    return {"now": platform.now(), "offset_s": platform.clock_offset_s}


@router.post("/reset", status_code=204)
async def reset_all(request: Request) -> Response:
    request.app.state.platform = Platform()
    return Response(status_code=204)


@router.get("/media/{media_id}")
async def get_media(media_id: str, request: Request) -> Response:
    media = platform_of(request).media.get(media_id)
    if media is None:
        raise HTTPException(404, "no such media")
    return Response(media["content"], media_type=media["content_type"])
