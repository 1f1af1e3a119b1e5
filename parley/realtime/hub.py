"""The websockets this node holds, and which events each of them may see."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog
from fastapi import WebSocket
from prometheus_client import Gauge

from parley.realtime.bus import Event, EventBus

log = structlog.get_logger()

CONNECTED = Gauge("parley_websocket_connections", "Agent websockets held by this node")
QUEUE_LIMIT = 1000


@dataclass(eq=False)
class Connection:
    websocket: WebSocket
    user_id: uuid.UUID
    permissions: frozenset[str]
    outbox: asyncio.Queue[str] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))

    def wants(self, event: Event) -> bool:
        audience: dict[str, Any] = event.get("audience") or {}
        permission = audience.get("permission")
        if permission and permission not in self.permissions:
            return False
        user_ids = audience.get("user_ids")
        return user_ids is None or str(self.user_id) in {str(u) for u in user_ids}


class Hub:
    """Fans bus events out to matching local websockets.

    Each connection has a bounded queue drained by its own writer, so one slow
    browser can neither block the bus nor grow memory without bound: when its
    queue is full it is disconnected and reloads on reconnect.
    """

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self.connections: set[Connection] = set()
        bus.subscribe(self.deliver)

    async def deliver(self, event: Event) -> None:
        if not self.connections:
            return
        # orjson: about a tenth of json's time for an event, once per event on the busiest path; its
        # datetimes are ISO 8601, as the REST API writes them.
        payload = orjson.dumps(
            {k: v for k, v in event.items() if k != "audience"}, default=str, option=orjson.OPT_NON_STR_KEYS
        ).decode()
        for connection in list(self.connections):
            if not connection.wants(event):
                continue
            try:
                connection.outbox.put_nowait(payload)
            except asyncio.QueueFull:
                log.warning("ws.slow_client_dropped", user_id=str(connection.user_id))
                self.connections.discard(connection)
                with contextlib.suppress(Exception):
                    await connection.websocket.close(code=1013)

    async def serve(self, connection: Connection) -> None:
        """Runs one websocket until it closes: writes queued events, reads client messages."""
        self.connections.add(connection)
        CONNECTED.inc()
        writer = asyncio.create_task(self._write(connection))
        try:
            await connection.websocket.send_text(json.dumps({"type": "hello", "node": self.bus.node_id}))
            while True:
                text = await connection.websocket.receive_text()
                await self._on_client_message(connection, text)
        except Exception:  # noqa: S110  (disconnects surface as various exceptions; all end the loop)
            pass
        finally:
            self.connections.discard(connection)
            CONNECTED.dec()
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    async def _write(self, connection: Connection) -> None:
        while True:
            payload = await connection.outbox.get()
            await connection.websocket.send_text(payload)

    async def _on_client_message(self, connection: Connection, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        if message.get("type") == "ping":
            connection.outbox.put_nowait(json.dumps({"type": "pong"}))
        elif message.get("type") == "typing" and "conversation_id" in message:
            await self.bus.publish(
                {
                    "type": "typing",
                    "conversation_id": str(message["conversation_id"]),
                    "user_id": str(connection.user_id),
                    "audience": {"permission": "conversations.read"},
                }
            )
