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

from parley.ops.asgi import respond

# Only work that arrives from outside and costs database time is counted; health
# checks, metrics and static files must keep answering while Parley is busy.
LIMITED_PREFIXES = ("/api/", "/channels/")


OVERLOADED_BODY = json.dumps(
    {"error": "Overloaded", "detail": "Parley is at its limit of concurrent requests; retry shortly"}
).encode()


class InflightGate:
    """The count of inbound requests in flight and the cap on it, shared by every entry that admits them.

    The middleware counts the API and the console; the webhook edge
    (:mod:`parley.channels.edge`), which answers webhooks ahead of the middleware, counts
    its requests against the same gate.
    """

    def __init__(self, max_inflight: int, retry_after_s: int = 1) -> None:
        self.max_inflight = max_inflight
        self.retry_after_s = retry_after_s
        self.inflight = 0
        self.shed = 0

    def enter(self) -> bool:
        """Admits one more request, or counts it as shed and says no (then answer with :meth:`refuse`)."""
        # A single event loop runs this check and the increment without a switch in
        # between, so no lock is needed.
        if self.inflight >= self.max_inflight:
            self.shed += 1
            return False
        self.inflight += 1
        return True

    def leave(self) -> None:
        self.inflight -= 1

    async def refuse(self, send: Send) -> None:
        await respond(
            send,
            503,
            OVERLOADED_BODY,
            b"application/json",
            [(b"retry-after", str(self.retry_after_s).encode())],
        )


class InflightLimitMiddleware:
    def __init__(
        self, app: ASGIApp, max_inflight: int, retry_after_s: int = 1, gate: InflightGate | None = None
    ) -> None:
        self.app = app
        self.gate = gate or InflightGate(max_inflight, retry_after_s)

    @property
    def inflight(self) -> int:
        return self.gate.inflight

    @property
    def shed(self) -> int:
        return self.gate.shed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(LIMITED_PREFIXES):
            await self.app(scope, receive, send)
            return
        gate = self.gate
        if not gate.enter():
            await gate.refuse(send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            gate.leave()
