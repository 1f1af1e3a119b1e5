"""Async client of the Official Account API (PROTOCOLS.md 1.7), with a shared access token.

The access token comes from ``/cgi-bin/stable_token`` (the dossier's advice:
repeated calls return the same token, so two processes refreshing at once
don't invalidate each other) and lives in the :class:`TokenStore`, so every
Parley process uses one token. It is treated as stale ``refresh_margin_s``
before it expires (capped at a tenth of its lifetime for short test tokens).
On 40001/40014/42001 the client refreshes once and retries the call once; an
in-process lock per account keeps concurrent callers from stampeding the
token endpoint.

Every call carries ``X-Parley-Idempotency-Key`` when the caller gives one: the
real platform ignores it, the simulator records it for exactly-once checks.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import structlog

from parley.channels.base import (
    AccountContext,
    ChannelPermanentError,
    ChannelRetriableError,
    TokenStore,
)
from parley.channels.wechat.errors import TOKEN_ERRCODES, error_for

log = structlog.get_logger()

IDEMPOTENCY_HEADER = "X-Parley-Idempotency-Key"
TOKEN_KIND = "access_token"  # noqa: S105 - the TokenStore kind, not a credential
OFFICIAL_API_BASE = "https://api.weixin.qq.com"
FOLLOWERS_PER_PAGE = 10_000
BATCHGET_MAX = 100
TAGGING_MAX = 50
QR_MAX_EXPIRE_S = 2_592_000

_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def _token_lock(account_id: str) -> asyncio.Lock:
    # One lock per account and event loop, shared by every client instance in the
    # process: adapters are built per request, so a per-instance lock would not help.
    per_loop = _locks.setdefault(asyncio.get_running_loop(), {})
    return per_loop.setdefault(account_id, asyncio.Lock())


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass(frozen=True)
class FollowerPage:
    total: int
    openids: list[str]
    next_openid: str


@dataclass(frozen=True)
class QRCode:
    ticket: str
    url: str
    expire_seconds: int | None
    image_url: str


@dataclass(frozen=True)
class OAuthToken:
    access_token: str
    expires_in: int
    refresh_token: str
    openid: str
    scope: str
    unionid: str | None
    is_snapshotuser: bool


class WeChatClient:
    """One account's API client. Raises the four outcome errors of ``parley.channels.base``."""

    def __init__(
        self,
        account: AccountContext,
        http: httpx.AsyncClient,
        tokens: TokenStore,
        *,
        refresh_margin_s: float = 300.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.account = account
        self._http = http
        self._tokens = tokens
        self._margin = refresh_margin_s
        self._now = clock or (lambda: datetime.now(UTC))
        self.base_url = (account.api_base_url or OFFICIAL_API_BASE).rstrip("/")

    @property
    def app_id(self) -> str:
        return str(self.account.config.get("app_id") or self.account.external_id)

    @property
    def _secret(self) -> str:
        return self.account.secrets["app_secret"]

    @property
    def _official(self) -> bool:
        return self.base_url == OFFICIAL_API_BASE

    # --- access token -----------------------------------------------------------------------

    async def access_token(self) -> str:
        """A valid token from the shared store, fetching one if there is none or it is about to expire."""
        stored = await self._tokens.get(self.account.account_id, TOKEN_KIND)
        if stored is not None and stored[1] > self._now():
            return stored[0]
        return await self._refresh(stale=stored[0] if stored else None)

    async def _refresh(self, *, stale: str | None) -> str:
        async with _token_lock(self.account.account_id):
            stored = await self._tokens.get(self.account.account_id, TOKEN_KIND)
            # Someone (this process or another) replaced the token while we waited.
            if stored is not None and stored[0] != stale and stored[1] > self._now():
                return stored[0]
            value, expires_in = await self._fetch_token()
            margin = min(self._margin, expires_in / 10)
            use_until = self._now() + timedelta(seconds=expires_in - margin)
            await self._tokens.put(self.account.account_id, TOKEN_KIND, value, use_until)
            log.info("wechat.token.refreshed", app_id=self.app_id, expires_in=expires_in)
            return value

    async def _fetch_token(self) -> tuple[str, int]:
        body = {
            "grant_type": "client_credential",
            "appid": self.app_id,
            "secret": self._secret,
            "force_refresh": False,
        }
        data = await self._raw("POST", "/cgi-bin/stable_token", json_body=body)
        self._raise_for(data)
        try:
            return str(data["access_token"]), int(data.get("expires_in", 7200))
        except (KeyError, TypeError, ValueError) as exc:
            raise ChannelRetriableError("stable_token answered without a token", raw=data) from exc

    # --- transport --------------------------------------------------------------------------

    async def _raw(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        files: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        headers: dict[str, str] = {}
        if idempotency_key:
            headers[IDEMPOTENCY_HEADER] = idempotency_key
        content: bytes | None = None
        if json_body is not None:
            # Unescaped UTF-8: escaped CJK counts against the platform's length limits.
            content = json.dumps(json_body, ensure_ascii=False).encode()
            headers["Content-Type"] = "application/json; charset=utf-8"
        try:
            response = await self._http.request(
                method, self.base_url + path, params=params, content=content, files=files, headers=headers
            )
        except httpx.TimeoutException as exc:
            raise ChannelRetriableError(f"WeChat API timed out: {path}", retry_after_s=5.0) from exc
        except httpx.TransportError as exc:
            raise ChannelRetriableError(f"WeChat API unreachable: {exc}", retry_after_s=5.0) from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise ChannelRetriableError(
                f"WeChat API answered HTTP {response.status_code}", retry_after_s=5.0, raw=response.text[:500]
            )
        try:
            data = response.json()
        except ValueError as exc:
            raise ChannelPermanentError(
                f"WeChat API answered HTTP {response.status_code} without JSON", raw=response.text[:500]
            ) from exc
        if not isinstance(data, dict):
            raise ChannelPermanentError("WeChat API answered JSON that is not an object", raw=data)
        return data

    @staticmethod
    def _errcode(data: Mapping[str, Any]) -> int:
        try:
            return int(data.get("errcode") or 0)
        except (TypeError, ValueError):
            return -1

    def _raise_for(self, data: Mapping[str, Any], *, allow: Iterable[int] = ()) -> None:
        code = self._errcode(data)
        if code and code not in allow:
            errmsg = str(data.get("errmsg", ""))
            log.warning("wechat.api.error", app_id=self.app_id, errcode=code, errmsg=errmsg)
            raise error_for(code, errmsg, dict(data))

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        files: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        allow: Iterable[int] = (),
    ) -> dict[str, Any]:
        """Calls an ``access_token`` API; refreshes the token once on 40001/40014/42001."""
        token = await self.access_token()
        data: dict[str, Any] = {}
        for attempt in range(2):
            query = {**(params or {}), "access_token": token}
            data = await self._raw(
                method, path, params=query, json_body=json_body, files=files, idempotency_key=idempotency_key
            )
            if self._errcode(data) in TOKEN_ERRCODES and attempt == 0:
                log.info("wechat.token.rejected", app_id=self.app_id, errcode=self._errcode(data))
                token = await self._refresh(stale=token)
                continue
            break
        self._raise_for(data, allow=allow)
        return data

    # --- messages ---------------------------------------------------------------------------

    async def send_custom(
        self, payload: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """``message/custom/send``: ``payload`` is the platform body (touser, msgtype, …)."""
        return await self.call(
            "POST", "/cgi-bin/message/custom/send", json_body=payload, idempotency_key=idempotency_key
        )

    async def typing(self, openid: str, *, on: bool = True) -> None:
        body = {"touser": openid, "command": "Typing" if on else "CancelTyping"}
        await self.call("POST", "/cgi-bin/message/custom/typing", json_body=body)

    async def send_template(
        self,
        openid: str,
        template_id: str,
        data: Mapping[str, Any],
        *,
        url: str | None = None,
        miniprogram: Mapping[str, str] | None = None,
        client_msg_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "touser": openid,
            "template_id": template_id,
            # Accept plain values as well as the platform's {"value": …} form.
            "data": {k: v if isinstance(v, Mapping) else {"value": str(v)} for k, v in data.items()},
        }
        if url:
            body["url"] = url
        if miniprogram:
            body["miniprogram"] = dict(miniprogram)
        if client_msg_id:
            body["client_msg_id"] = client_msg_id
        return await self.call(
            "POST", "/cgi-bin/message/template/send", json_body=body, idempotency_key=idempotency_key
        )

    async def send_mass(
        self,
        msgtype: str,
        content: Mapping[str, Any],
        *,
        tag_id: int | None = None,
        openids: Sequence[str] | None = None,
        clientmsgid: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Mass send to everyone (no tag, no list), to a tag, or to 2–10,000 OpenIDs.

        A duplicate ``clientmsgid`` (45065) is the platform confirming an earlier
        submission, so it is returned as success.
        """
        body: dict[str, Any] = {"msgtype": msgtype, msgtype: dict(content)}
        if clientmsgid:
            body["clientmsgid"] = clientmsgid
        if openids is not None:
            body["touser"] = list(openids)
            path = "/cgi-bin/message/mass/send"
        else:
            body["filter"] = {
                "is_to_all": tag_id is None,
                **({"tag_id": tag_id} if tag_id is not None else {}),
            }
            path = "/cgi-bin/message/mass/sendall"
        return await self.call("POST", path, json_body=body, idempotency_key=idempotency_key, allow=(45065,))

    # --- menu -------------------------------------------------------------------------------

    async def list_templates(self) -> list[dict[str, Any]]:
        """The account's templates (模板消息 → 我的模板): id, title, content with {{key.DATA}} slots."""
        data = await self.call("GET", "/cgi-bin/template/get_all_private_template")
        return list(data.get("template_list") or [])

    async def create_menu(self, menu: Mapping[str, Any]) -> None:
        await self.call("POST", "/cgi-bin/menu/create", json_body=dict(menu))

    async def get_menu(self) -> dict[str, Any] | None:
        """The published menu, or None when there is none (46003)."""
        data = await self.call("GET", "/cgi-bin/menu/get", allow=(46003,))
        return None if self._errcode(data) == 46003 else data

    async def delete_menu(self) -> None:
        await self.call("GET", "/cgi-bin/menu/delete")

    # --- QR codes ---------------------------------------------------------------------------

    async def create_qrcode(
        self, scene: int | str, *, permanent: bool = False, expire_seconds: int = 604_800
    ) -> QRCode:
        """A parametric QR code; temporary ones always carry an explicit lifetime (the default is 60 s)."""
        is_str = isinstance(scene, str)
        key = "scene_str" if is_str else "scene_id"
        action = (
            ("QR_LIMIT_STR_SCENE" if is_str else "QR_LIMIT_SCENE")
            if permanent
            else ("QR_STR_SCENE" if is_str else "QR_SCENE")
        )
        body: dict[str, Any] = {"action_name": action, "action_info": {"scene": {key: scene}}}
        if not permanent:
            body["expire_seconds"] = min(expire_seconds, QR_MAX_EXPIRE_S)
        data = await self.call("POST", "/cgi-bin/qrcode/create", json_body=body)
        ticket = str(data["ticket"])
        expire = data.get("expire_seconds")
        return QRCode(
            ticket=ticket,
            url=str(data.get("url", "")),
            expire_seconds=int(expire) if expire is not None else None,
            image_url=self.qrcode_image_url(ticket),
        )

    def qrcode_image_url(self, ticket: str) -> str:
        base = "https://mp.weixin.qq.com" if self._official else self.base_url
        return f"{base}/cgi-bin/showqrcode?ticket={quote(ticket, safe='')}"

    # --- users ------------------------------------------------------------------------------

    async def user_info(self, openid: str, *, lang: str = "zh_CN") -> dict[str, Any]:
        return await self.call("GET", "/cgi-bin/user/info", params={"openid": openid, "lang": lang})

    async def batch_user_info(self, openids: Sequence[str], *, lang: str = "zh_CN") -> list[dict[str, Any]]:
        """Profiles of any number of users, 100 per call."""
        result: list[dict[str, Any]] = []
        for chunk in _chunks(openids, BATCHGET_MAX):
            body = {"user_list": [{"openid": o, "lang": lang} for o in chunk]}
            data = await self.call("POST", "/cgi-bin/user/info/batchget", json_body=body)
            result.extend(data.get("user_info_list", []))
        return result

    async def followers_page(self, next_openid: str = "") -> FollowerPage:
        data = await self.call("GET", "/cgi-bin/user/get", params={"next_openid": next_openid})
        return self._page(data)

    @staticmethod
    def _page(data: Mapping[str, Any]) -> FollowerPage:
        openids = list((data.get("data") or {}).get("openid") or [])
        return FollowerPage(
            total=int(data.get("total", 0)), openids=openids, next_openid=str(data.get("next_openid") or "")
        )

    async def iter_followers(self) -> AsyncIterator[str]:
        """Every follower's OpenID, page by page (10,000 a page)."""
        next_openid = ""
        while True:
            page = await self.followers_page(next_openid)
            for openid in page.openids:
                yield openid
            # The last page may repeat next_openid or omit data: stop on either.
            if not page.openids or not page.next_openid or page.next_openid == next_openid:
                return
            next_openid = page.next_openid

    async def update_remark(self, openid: str, remark: str) -> None:
        await self.call(
            "POST", "/cgi-bin/user/info/updateremark", json_body={"openid": openid, "remark": remark}
        )

    # --- tags -------------------------------------------------------------------------------

    async def create_tag(self, name: str) -> dict[str, Any]:
        data = await self.call("POST", "/cgi-bin/tags/create", json_body={"tag": {"name": name}})
        return dict(data["tag"])

    async def get_tags(self) -> list[dict[str, Any]]:
        data = await self.call("GET", "/cgi-bin/tags/get")
        return list(data.get("tags", []))

    async def update_tag(self, tag_id: int, name: str) -> None:
        await self.call("POST", "/cgi-bin/tags/update", json_body={"tag": {"id": tag_id, "name": name}})

    async def delete_tag(self, tag_id: int) -> None:
        await self.call("POST", "/cgi-bin/tags/delete", json_body={"tag": {"id": tag_id}})

    async def tag_users(self, tag_id: int, openids: Sequence[str]) -> None:
        for chunk in _chunks(openids, TAGGING_MAX):
            body = {"openid_list": list(chunk), "tagid": tag_id}
            await self.call("POST", "/cgi-bin/tags/members/batchtagging", json_body=body)

    async def untag_users(self, tag_id: int, openids: Sequence[str]) -> None:
        for chunk in _chunks(openids, TAGGING_MAX):
            body = {"openid_list": list(chunk), "tagid": tag_id}
            await self.call("POST", "/cgi-bin/tags/members/batchuntagging", json_body=body)

    async def user_tags(self, openid: str) -> list[int]:
        data = await self.call("POST", "/cgi-bin/tags/getidlist", json_body={"openid": openid})
        return [int(t) for t in data.get("tagid_list", [])]

    async def tag_followers_page(self, tag_id: int, next_openid: str = "") -> FollowerPage:
        data = await self.call(
            "POST", "/cgi-bin/user/tag/get", json_body={"tagid": tag_id, "next_openid": next_openid}
        )
        return self._page(data)

    # --- media ------------------------------------------------------------------------------

    async def upload_media(
        self, media_type: str, filename: str, content: bytes, content_type: str
    ) -> dict[str, Any]:
        """Temporary media (valid 3 days): ``media_type`` is image, voice, video or thumb."""
        files = {"media": (filename, content, content_type)}
        return await self.call("POST", "/cgi-bin/media/upload", params={"type": media_type}, files=files)

    # --- OAuth2 web authorization -------------------------------------------------------------

    def authorize_url(self, redirect_uri: str, *, scope: str = "snsapi_base", state: str = "") -> str:
        """Where to send the user; parameter order and the fragment matter to the platform."""
        base = "https://open.weixin.qq.com" if self._official else self.base_url
        query = urlencode(
            [
                ("appid", self.app_id),
                ("redirect_uri", redirect_uri),
                ("response_type", "code"),
                ("scope", scope),
                ("state", state),
            ]
        )
        return f"{base}/connect/oauth2/authorize?{query}#wechat_redirect"

    async def exchange_code(self, code: str) -> OAuthToken:
        params = {
            "appid": self.app_id,
            "secret": self._secret,
            "code": code,
            "grant_type": "authorization_code",
        }
        data = await self._raw("GET", "/sns/oauth2/access_token", params=params)
        self._raise_for(data)
        return OAuthToken(
            access_token=str(data["access_token"]),
            expires_in=int(data.get("expires_in", 7200)),
            refresh_token=str(data.get("refresh_token", "")),
            openid=str(data["openid"]),
            scope=str(data.get("scope", "")),
            unionid=data.get("unionid") or None,
            is_snapshotuser=bool(data.get("is_snapshotuser")),
        )

    async def oauth_userinfo(self, access_token: str, openid: str, *, lang: str = "zh_CN") -> dict[str, Any]:
        params = {"access_token": access_token, "openid": openid, "lang": lang}
        data = await self._raw("GET", "/sns/userinfo", params=params)
        self._raise_for(data)
        return data
