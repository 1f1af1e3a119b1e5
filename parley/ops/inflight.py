"""Load shedding at the edge: a cap on concurrent inbound work (settings.max_inflight_inbound).

Past the cap Parley answers 503 with ``Retry-After`` at once instead of queueing
requests until it falls over (the seed's flow control: refuse what exceeds the
system's capacity). Platforms retry a webhook that got a non-200 answer
(WeChat three times, WhatsApp for up to seven days), so a shed webhook is
delayed, not lost; API clients are told when to come back.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

# Only work that arrives from outside and costs database time is counted; health
# checks, metrics and static files must keep answering while Parley is busy.
LIMITED_PREFIXES = ("/api/", "/channels/")


class InflightLimitMiddleware:
    def __init__(self, app: ASGIApp, max_inflight: int, retry_after_s: int = 1) -> None:
        self.app = app
        self.max_inflight = max_inflight
        self.retry_after_s = retry_after_s
        self.inflight = 0
        self.shed = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(LIMITED_PREFIXES):
            await self.app(scope, receive, send)
            return
        # A single event loop runs this check and the increment without a switch in
        # between, so no lock is needed.
        if self.inflight >= self.max_inflight:
            self.shed += 1
            await self._refuse(send)
            return
        self.inflight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.inflight -= 1

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(
            {"error": "Overloaded", "detail": "Parley is at its limit of concurrent requests; retry shortly"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", str(self.retry_after_s).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
