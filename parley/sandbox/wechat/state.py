"""The simulated platform's memory: accounts, users, tokens, limits, the delivery record.

Everything lives in one process, and time comes from :meth:`Platform.now` so tests
can move the clock (``POST /_sandbox/clock``) instead of sleeping: the 48-hour
window, token expiry, media and OAuth-code lifetimes and daily quotas all read it.
"""

from __future__ import annotations

import hashlib
import itertools
import secrets
import string
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

BEIJING = timezone(timedelta(hours=8))

# PROTOCOLS.md 1.7.12 (new-account defaults); template sends have no documented
# daily cap there, so none is set unless a test configures one.
DEFAULT_DAILY_QUOTAS: dict[str, int] = {
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
    "user_info": 5_000_000,
    "update_remark": 10_000,
    "mass_send": 100,
}

# The account's template library (模板库 → 我的模板) as ``get_all_private_template`` lists it.
# New-style keys (thing/time/character_string…) as the platform has used since 2023.
DEFAULT_TEMPLATES: tuple[dict[str, str], ...] = (
    {
        "template_id": "ngqIpbwh8bUfcSsECmogfXcV14J0tQlEpBO27izEYtY",
        "title": "订单发货通知",
        "primary_industry": "IT科技",
        "deputy_industry": "互联网|电子商务",
        "content": "商品名称：{{thing1.DATA}}\n发货时间：{{time2.DATA}}\n快递单号：{{character_string3.DATA}}",
        "example": "商品名称：智能手表\n发货时间：2026年11月23日 10:00\n快递单号：SF1234567890",
    },
    {
        "template_id": "Yk2dO3OfGYo6tS4XbXlpKvf8CzxrjR2y8aAQRqQb9Jw",
        "title": "预约成功提醒",
        "primary_industry": "IT科技",
        "deputy_industry": "互联网|电子商务",
        "content": "预约项目：{{thing1.DATA}}\n预约时间：{{time2.DATA}}\n门店地址：{{thing3.DATA}}",
        "example": "预约项目：车辆保养\n预约时间：2026年11月25日 14:00\n门店地址：渝北区金开大道88号",
    },
    {
        "template_id": "3vQ0o1mWcKQ5H1m0y8rZp9mJ7JjvT6oVv2b3xE7H8sA",
        "title": "服务评价邀请",
        "primary_industry": "IT科技",
        "deputy_industry": "互联网|电子商务",
        "content": "服务内容：{{thing1.DATA}}\n完成时间：{{time2.DATA}}",
        "example": "服务内容：在线咨询\n完成时间：2026年11月23日 16:30",
    },
)

ERRMSG: dict[int, str] = {
    -1: "system error",
    40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type",
    40003: "invalid openid",
    40004: "invalid media type",
    40006: "invalid media size",
    40007: "invalid media_id",
    40008: "invalid message type",
    40009: "invalid image size",
    40013: "invalid appid",
    40014: "invalid access_token",
    40016: "invalid button size",
    40017: "invalid button type",
    40018: "invalid button name size",
    40019: "invalid button key size",
    40020: "invalid button url size",
    40023: "invalid sub button size",
    40024: "invalid sub button type",
    40025: "invalid sub button name size",
    40026: "invalid sub button key size",
    40027: "invalid sub button url size",
    40029: "invalid code",
    40032: "invalid openid list size",
    40037: "invalid template_id",
    40053: "invalid action info",
    40097: "invalid args",
    40125: "invalid appsecret",
    40130: "invalid openid list size, at least two openid",
    40163: "code been used",
    41001: "access_token missing",
    41005: "media data missing",
    42001: "access_token expired",
    43004: "require subscribe",
    44002: "empty post data",
    44003: "empty news data",
    44004: "empty content",
    45008: "article size out of limit",
    45009: "reach max api daily quota limit",
    45011: "api minute-quota reach limit  mustslower  retry next minute",
    45015: "response out of time limit or subscription is canceled",
    45047: "out of response count limit",
    45056: "too many tags now, no more tags can be created",
    45057: "can't delete the tag that has too many fans",
    45058: "can't modify sys tag",
    45059: "tag fans too much",
    45065: "clientmsgid exist",
    45157: "invalid tag name",
    45158: "tag name too long",
    45159: "invalid tag id",
    46003: "menu no exist",
    47001: "data format error",
    47003: "argument invalid!",
    48001: "api unauthorized",
}

_OPENID_ALPHABET = string.ascii_letters + string.digits + "-_"


class WxError(Exception):
    """A platform error answered as ``{"errcode", "errmsg"}`` with HTTP 200, as the platform does."""

    def __init__(self, errcode: int, errmsg: str | None = None, **extra: Any) -> None:
        super().__init__(errcode)
        self.errcode = errcode
        self.errmsg = errmsg or ERRMSG.get(errcode, "error")
        self.extra = extra


class HttpFault(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def random_openid(rng: secrets.SystemRandom | None = None) -> str:
    chooser = rng or secrets.SystemRandom()
    return "o" + "".join(chooser.choice(_OPENID_ALPHABET) for _ in range(27))


def random_token(nbytes: int = 96) -> str:
    return secrets.token_urlsafe(nbytes)


@dataclass
class Grant:
    """A right to send customer-service messages: (kind, until, messages left or None for unlimited)."""

    kind: str
    expires_at: float
    remaining: int | None


@dataclass
class SimUser:
    openid: str
    nickname: str
    seq: int
    unionid: str | None = None
    subscribed: bool = True
    subscribe_time: int = 0
    subscribe_scene: str = "ADD_SCENE_SEARCH"
    qr_scene: int = 0
    qr_scene_str: str = ""
    tagids: list[int] = field(default_factory=list)
    remark: str = ""
    headimgurl: str = ""
    blocked_templates: bool = False
    last_message_at: float | None = None
    grants: list[Grant] = field(default_factory=list)

    def public(self, now: float) -> dict[str, Any]:
        live = [g for g in self.grants if g.expires_at > now]
        return {
            "openid": self.openid,
            "nickname": self.nickname,
            "unionid": self.unionid,
            "subscribed": self.subscribed,
            "subscribe_time": self.subscribe_time,
            "subscribe_scene": self.subscribe_scene,
            "qr_scene": self.qr_scene,
            "qr_scene_str": self.qr_scene_str,
            "tagid_list": list(self.tagids),
            "remark": self.remark,
            "headimgurl": self.headimgurl,
            "blocked_templates": self.blocked_templates,
            "last_message_at": self.last_message_at,
            "window": {
                "open": bool(live),
                "grants": [
                    {"kind": g.kind, "expires_at": g.expires_at, "remaining": g.remaining} for g in live
                ],
            },
        }


@dataclass
class Fault:
    count: int
    api: str | None = None
    errcode: int | None = None
    http_status: int | None = None
    delay_s: float = 0.0


@dataclass
class Limits:
    daily_quotas: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_DAILY_QUOTAS))
    rate_limit_per_s: float | None = None
    rate_limit_errcode: int = 45011
    token_lifetime_s: int = 7200
    delay_s: float = 0.0
    faults: list[Fault] = field(default_factory=list)
    enforce_window: bool = True
    window_hours: float = 48.0
    window_messages: int | None = 5
    webhook_timeout_s: float = 5.0
    webhook_attempts: int = 3
    retry_delay_s: float = 0.0
    push_job_events: bool = True
    job_event_delay_s: float = 0.2

    def public(self) -> dict[str, Any]:
        return {
            "daily_quotas": dict(self.daily_quotas),
            "rate_limit_per_s": self.rate_limit_per_s,
            "rate_limit_errcode": self.rate_limit_errcode,
            "token_lifetime_s": self.token_lifetime_s,
            "delay_s": self.delay_s,
            "faults": [f.__dict__.copy() for f in self.faults if f.count > 0],
            "enforce_window": self.enforce_window,
            "window_hours": self.window_hours,
            "window_messages": self.window_messages,
            "webhook_timeout_s": self.webhook_timeout_s,
            "webhook_attempts": self.webhook_attempts,
            "retry_delay_s": self.retry_delay_s,
            "push_job_events": self.push_job_events,
            "job_event_delay_s": self.job_event_delay_s,
        }


@dataclass
class AccessToken:
    value: str
    app_id: str
    kind: str  # token | stable_token
    expires_at: float
    revoked_at: float | None = None


@dataclass
class SimAccount:
    app_id: str
    app_secret: str
    token: str
    encoding_aes_key: str | None
    encryption_mode: str
    original_id: str
    webhook_url: str | None
    name: str
    users: dict[str, SimUser] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    menu: dict[str, Any] | None = None
    tags: dict[int, str] = field(default_factory=lambda: {2: "星标组"})
    next_tag_id: int = 100
    limits: Limits = field(default_factory=Limits)
    stable_token: AccessToken | None = None
    cgi_token: AccessToken | None = None
    forced_refreshes: list[float] = field(default_factory=list)
    usage: Counter[str] = field(default_factory=Counter)
    usage_day: str = ""
    recent_calls: deque[float] = field(default_factory=deque)
    conversations: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    mass_client_ids: dict[str, int] = field(default_factory=dict)
    templates: dict[str, dict[str, str]] = field(
        default_factory=lambda: {t["template_id"]: dict(t) for t in DEFAULT_TEMPLATES}
    )

    def public(self) -> dict[str, Any]:
        return {
            "app_id": self.app_id,
            "app_secret": self.app_secret,
            "token": self.token,
            "encoding_aes_key": self.encoding_aes_key,
            "encryption_mode": self.encryption_mode,
            "original_id": self.original_id,
            "webhook_url": self.webhook_url,
            "name": self.name,
            "users": len(self.users),
            "followers": sum(1 for u in self.users.values() if u.subscribed),
            "menu": self.menu,
            "limits": self.limits.public(),
            "usage_today": dict(self.usage),
        }

    @property
    def system_openid(self) -> str:
        """Who job-finished events come from: the account's own operator, not a follower."""
        return "o" + hashlib.sha256(self.app_id.encode()).hexdigest()[:27]


class Platform:
    """All of the simulator's state."""

    def __init__(self) -> None:
        self.clock_offset_s = 0.0
        self.accounts: dict[str, SimAccount] = {}
        self.tokens: dict[str, AccessToken] = {}
        self.qrcodes: dict[str, dict[str, Any]] = {}
        self.media: dict[str, dict[str, Any]] = {}
        self.oauth_codes: dict[str, dict[str, Any]] = {}
        self.oauth_tokens: dict[str, dict[str, Any]] = {}
        self.oauth_refresh: dict[str, dict[str, Any]] = {}
        self.record: list[dict[str, Any]] = []
        self.seen_keys: set[tuple[str, str]] = set()
        self.calls: deque[dict[str, Any]] = deque(maxlen=20_000)
        self.stats_calls: Counter[str] = Counter()
        self.stats_errors: Counter[int] = Counter()
        self.stats_per_second: Counter[int] = Counter()
        self.stats_webhook: Counter[str] = Counter()
        self._seq = itertools.count(1)
        self._msg_ids = itertools.count(24_600_000_000_000_000 + secrets.randbelow(10**12))
        self._job_ids = itertools.count(2_000_000_000 + secrets.randbelow(10**6))

    # --- time and ids -----------------------------------------------------------------------

    def now(self) -> float:
        return time.time() + self.clock_offset_s

    def now_dt(self) -> datetime:
        return datetime.fromtimestamp(self.now(), UTC)

    def seq(self) -> int:
        return next(self._seq)

    def msg_id(self) -> int:
        # Real MsgIds are 64-bit and exceed 2^53; so do ours, so parsers are tested on that.
        return next(self._msg_ids)

    def job_id(self) -> int:
        return next(self._job_ids)

    def beijing_day(self) -> str:
        return datetime.fromtimestamp(self.now(), BEIJING).strftime("%Y-%m-%d")

    # --- lookups ----------------------------------------------------------------------------

    def account(self, app_id: str) -> SimAccount | None:
        return self.accounts.get(app_id)

    def add_user(self, account: SimAccount, **fields: Any) -> SimUser:
        openid = fields.pop("openid", None) or random_openid()
        user = SimUser(openid=openid, seq=len(account.order), **fields)
        if openid not in account.users:
            account.order.append(openid)
        else:
            user.seq = account.users[openid].seq
        account.users[openid] = user
        return user

    def issue_token(self, account: SimAccount, kind: str) -> AccessToken:
        token = AccessToken(
            value=random_token(),
            app_id=account.app_id,
            kind=kind,
            expires_at=self.now() + account.limits.token_lifetime_s,
        )
        self.tokens[token.value] = token
        return token

    # --- the conversation a phone shows -------------------------------------------------------

    def converse(
        self, account: SimAccount, openid: str, *, direction: str, via: str, kind: str, content: Any
    ) -> dict[str, Any]:
        entry = {
            "id": self.seq(),
            "at": self.now(),
            "direction": direction,  # in (user → account) | out (account → user) | system
            "via": via,
            "type": kind,
            "content": content,
        }
        log = account.conversations.setdefault(openid, [])
        log.append(entry)
        if len(log) > 500:
            del log[: len(log) - 500]
        return entry

    # --- the delivery record ------------------------------------------------------------------

    def deliver_record(
        self,
        account: SimAccount,
        *,
        openid: str,
        api: str,
        kind: str,
        content: Any,
        idempotency_key: str | None,
        msgid: int | None = None,
        status: str = "delivered",
    ) -> dict[str, Any]:
        now = self.now()
        duplicate = False
        if idempotency_key:
            marker = (account.app_id, idempotency_key)
            duplicate = marker in self.seen_keys
            self.seen_keys.add(marker)
        entry = {
            "seq": self.seq(),
            "app_id": account.app_id,
            "openid": openid,
            "api": api,
            "type": kind,
            "content": content,
            "idempotency_key": idempotency_key,
            "duplicate": duplicate,
            "msgid": msgid,
            "status": status,
            "ts": now,
            "at": datetime.fromtimestamp(now, UTC).isoformat(),
        }
        self.record.append(entry)
        self.stats_per_second[int(now)] += 1
        return entry
