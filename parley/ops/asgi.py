"""Answering at the ASGI level, for the guards and the webhook edge that run ahead of FastAPI."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.types import Message, Send


async def respond(
    send: Send, status: int, body: bytes, content_type: bytes, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    """A whole response: ``headers`` and the body's length and type, then the body."""
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            *headers,
            (b"content-length", str(len(body)).encode()),
            (b"content-type", content_type),
        ],
    }
    await send(start)
    await send({"type": "http.response.body", "body": body})
