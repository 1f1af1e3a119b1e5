"""Guards at the edge: body size."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from parley.ops.asgi import respond


class BodySizeLimitMiddleware:
    """Refuses request bodies over ``max_bytes`` with 413 before any handler reads them.

    Checks the declared Content-Length and also counts streamed bytes, so a
    chunked upload cannot slip past the limit.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, uploads: dict[str, int] | None = None) -> None:
        self.app = app
        self.default_max_bytes = max_bytes
        self.max_bytes = max_bytes
        # Path prefixes that take larger bodies (file uploads), with their own limit.
        self.uploads = uploads or {}

    def _limit(self, scope: Scope) -> int:
        path = str(scope.get("path", ""))
        for prefix, limit in self.uploads.items():
            if path.startswith(prefix) and scope.get("method") == "POST":
                return limit
        return self.default_max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self._limit(scope)
        if declared_too_large(scope, max_bytes):
            await refuse_too_large(send, max_bytes)
            return
        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    raise TooLarge()
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except TooLarge:
            if not response_started:
                await refuse_too_large(send, max_bytes)


def declared_too_large(scope: Scope, max_bytes: int) -> bool:
    """Whether the declared Content-Length is unreadable or over ``max_bytes``."""
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                declared = -1
            if declared < 0 or declared > max_bytes:
                return True
    return False


async def refuse_too_large(send: Send, max_bytes: int) -> None:
    body = json.dumps(
        {"error": "PayloadTooLarge", "detail": f"Request body is larger than {max_bytes} bytes"}
    ).encode()
    await respond(send, 413, body, b"application/json")


class TooLarge(Exception):
    """More body bytes arrived than the limit allows."""
