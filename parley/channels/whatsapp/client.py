"""Async Graph API client for the WhatsApp Cloud API (PROTOCOLS.md 2.5).

Thin on purpose: it builds URLs, adds the Bearer token, and turns every failure
into one of the four outcome errors (``errors.py``). There is no token refresh:
Cloud API system-user tokens are long-lived, and an expired one (190) is a
permanent error that tells the operator to paste a new token.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
import orjson
from yarl import URL

from parley.channels.base import ChannelPermanentError
from parley.channels.whatsapp import errors
from parley.channels.whatsapp.config import DEFAULT_API_VERSION

IDEMPOTENCY_HEADER = "X-Parley-Idempotency-Key"


@dataclass(frozen=True)
class MediaInfo:
    media_id: str
    url: str
    mime_type: str | None
    sha256: str | None
    file_size: int | None


def _encode(payload: dict[str, Any]) -> bytes:
    # orjson: a tenth of the json module's time for a send body, on the delivery engine's hot path.
    try:
        return orjson.dumps(payload)
    except TypeError:
        # What orjson refuses and json takes (integers beyond 64 bits in a template's parameters).
        return json.dumps(payload).encode()


class WhatsAppClient:
    """Calls the Graph API as one WhatsApp Business account."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        base_url: str,
        access_token: str,
        api_version: str = DEFAULT_API_VERSION,
        timeout_s: float = 20.0,
    ) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._token = access_token
        self._version = api_version
        self._timeout = timeout_s
        self._session: aiohttp.ClientSession | None = None
        self._send_headers = {"Authorization": f"Bearer {access_token}", "Content-Type": "application/json"}
        # Parsed once per sending number: aiohttp takes a URL object as it is, a string it parses each time.
        self._send_urls: dict[str, URL] = {}
        self._aio_timeout = aiohttp.ClientTimeout(total=timeout_s, connect=min(5.0, timeout_s))

    def use_session(self, session: aiohttp.ClientSession) -> None:
        """Sends messages through ``session`` (aiohttp) instead of the httpx client.

        For the delivery engine, which sends at high concurrency: a send through aiohttp directly
        costs well under half the client CPU of one through httpx (measured against the simulator,
        docs/decisions/0002-delivery.md). Every other call keeps using httpx.
        """
        self._session = session

    def url(self, *parts: str) -> str:
        return "/".join([self._base, self._version, *parts])

    @property
    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    async def _call(
        self,
        method: str,
        url: str,
        *,
        json_body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        files: dict[str, tuple[str, bytes, str]] | None = None,
        data: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        try:
            response = await self._http.request(
                method,
                url,
                json=json_body,
                params=params,
                files=files,
                data=data,
                headers={**self._auth, **(headers or {})},
                timeout=self._timeout,
            )
        except httpx.HTTPError as exc:
            raise errors.from_network(exc) from exc
        if response.status_code >= 400:
            raise errors.from_response(response)
        return response

    async def _json(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        response = await self._call(method, url, **kwargs)
        try:
            body = response.json()
        except ValueError as exc:
            raise ChannelPermanentError(
                f"WhatsApp API answered {response.status_code} with a body that is not JSON",
                raw=response.text[:2000],
            ) from exc
        if not isinstance(body, dict):
            raise ChannelPermanentError("WhatsApp API answered with JSON that is not an object", raw=body)
        return body

    async def send_message(
        self, phone_number_id: str, payload: dict[str, Any], *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """POST /{phone_number_id}/messages; returns the response (``messages[0].id`` is the wamid)."""
        if self._session is not None:
            url = self._send_urls.get(phone_number_id)
            if url is None:
                url = self._send_urls[phone_number_id] = URL(self.url(phone_number_id, "messages"))
            body = await self._send_via_session(self._session, url, payload, idempotency_key)
        else:
            headers = {IDEMPOTENCY_HEADER: idempotency_key} if idempotency_key else None
            body = await self._json(
                "POST", self.url(phone_number_id, "messages"), json_body=payload, headers=headers
            )
        messages = body.get("messages")
        if not (
            isinstance(messages, list)
            and messages
            and isinstance(messages[0], dict)
            and messages[0].get("id")
        ):
            raise ChannelPermanentError("WhatsApp accepted the send but returned no message id", raw=body)
        return body

    async def _send_via_session(
        self, session: aiohttp.ClientSession, url: URL, payload: dict[str, Any], idempotency_key: str | None
    ) -> dict[str, Any]:
        headers = self._send_headers
        if idempotency_key:
            headers = {**headers, IDEMPOTENCY_HEADER: idempotency_key}
        try:
            async with session.post(
                url, data=_encode(payload), headers=headers, timeout=self._aio_timeout
            ) as response:
                status = response.status
                content = await response.read()
                if status >= 400:
                    raise errors.from_http(status, response.headers, content)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise errors.from_network(exc) from exc
        try:
            body = orjson.loads(content)
        except ValueError as exc:
            raise ChannelPermanentError(
                f"WhatsApp API answered {status} with a body that is not JSON",
                raw=content[:2000].decode("utf-8", "replace"),
            ) from exc
        if not isinstance(body, dict):
            raise ChannelPermanentError("WhatsApp API answered with JSON that is not an object", raw=body)
        return body

    async def mark_read(self, phone_number_id: str, message_id: str, *, typing: bool = False) -> bool:
        """Marks a customer's message read (blue ticks), optionally showing the typing indicator."""
        payload: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "status": "read",
            "message_id": message_id,
        }
        if typing:
            payload["typing_indicator"] = {"type": "text"}
        body = await self._json("POST", self.url(phone_number_id, "messages"), json_body=payload)
        return body.get("success") is True

    async def upload_media(
        self, phone_number_id: str, content: bytes, *, mime_type: str, filename: str
    ) -> str:
        """Uploads a file for later sends; returns the media id."""
        body = await self._json(
            "POST",
            self.url(phone_number_id, "media"),
            data={"messaging_product": "whatsapp", "type": mime_type},
            files={"file": (filename, content, mime_type)},
        )
        media_id = body.get("id")
        if not isinstance(media_id, str):
            raise ChannelPermanentError("WhatsApp media upload returned no id", raw=body)
        return media_id

    async def get_media(self, media_id: str) -> MediaInfo:
        """The short-lived (about 5 min) download URL and facts of a media id."""
        body = await self._json("GET", self.url(media_id))
        url = body.get("url")
        if not isinstance(url, str):
            raise ChannelPermanentError(f"WhatsApp returned no URL for media {media_id}", raw=body)
        size = body.get("file_size")
        return MediaInfo(
            media_id=str(body.get("id") or media_id),
            url=url,
            mime_type=body.get("mime_type") if isinstance(body.get("mime_type"), str) else None,
            sha256=body.get("sha256") if isinstance(body.get("sha256"), str) else None,
            file_size=int(size) if isinstance(size, int | str) and str(size).isdigit() else None,
        )

    async def download_media(self, url: str) -> bytes:
        """Downloads from a media URL; it needs the same Bearer token as the API."""
        response = await self._call("GET", url)
        return response.content

    async def fetch_media(self, media_id: str) -> tuple[MediaInfo, bytes]:
        """URL lookup and download in one go; the URL expires too fast to store."""
        info = await self.get_media(media_id)
        return info, await self.download_media(info.url)

    async def delete_media(self, media_id: str) -> bool:
        body = await self._json("DELETE", self.url(media_id))
        return body.get("success") is True

    async def _paged(self, url: str, params: dict[str, str]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        next_url: str | None = url
        next_params: dict[str, str] | None = params
        # Graph pages with absolute "next" URLs; cap the walk so a looping cursor can't hang us.
        for _ in range(100):
            if next_url is None:
                break
            body = await self._json("GET", next_url, params=next_params)
            data = body.get("data")
            if isinstance(data, list):
                items.extend(item for item in data if isinstance(item, dict))
            paging = body.get("paging")
            candidate = paging.get("next") if isinstance(paging, dict) else None
            next_url = candidate if isinstance(candidate, str) and candidate else None
            next_params = None
        return items

    async def list_templates(
        self, business_account_id: str, *, status: str | None = None, page_size: int = 100
    ) -> list[dict[str, Any]]:
        """GET /{waba}/message_templates, every page."""
        params = {"limit": str(page_size)}
        if status:
            params["status"] = status
        return await self._paged(self.url(business_account_id, "message_templates"), params)

    async def list_phone_numbers(self, business_account_id: str) -> list[dict[str, Any]]:
        """GET /{waba}/phone_numbers: the account's senders."""
        return await self._paged(
            self.url(business_account_id, "phone_numbers"),
            {"fields": "id,display_phone_number,verified_name,quality_rating,throughput"},
        )
