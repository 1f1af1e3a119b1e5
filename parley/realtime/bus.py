"""The event bus: every node hears every event, and pushes it to the websockets it holds.

Three backends, chosen by ``PARLEY_EVENT_BUS``:

- ``memory``: one process (the embedded default).
- ``redis``: Redis pub/sub on one channel; each node subscribes.
- ``rabbitmq``: a fanout exchange with one exclusive, auto-deleted queue per node
  (seed 004's design), so a node's queue disappears with the node.

Events are JSON objects. Delivery is at-most-once and best-effort, as for any
live push: the database stays the record, and a client that reconnects reloads
state from the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import structlog

log = structlog.get_logger()

Event = dict[str, Any]
Handler = Callable[[Event], Awaitable[None]]

REDIS_CHANNEL = "parley:events"
RABBIT_EXCHANGE = "parley.events"


class EventBus(Protocol):
    node_id: str

    def subscribe(self, handler: Handler) -> None: ...

    async def publish(self, event: Event) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class _Dispatcher:
    def __init__(self) -> None:
        self.node_id = uuid.uuid4().hex[:12]
        self._handlers: list[Handler] = []

    def subscribe(self, handler: Handler) -> None:
        self._handlers.append(handler)

    async def _dispatch(self, event: Event) -> None:
        for handler in list(self._handlers):
            try:
                await handler(event)
            except Exception:
                log.exception("bus.handler_failed", event_type=event.get("type"))


class MemoryBus(_Dispatcher):
    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def publish(self, event: Event) -> None:
        await self._dispatch({**event, "origin": self.node_id})


class RedisBus(_Dispatcher):
    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self) -> None:
        from redis.asyncio import Redis

        self._redis = Redis.from_url(self.url)
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        await self._pubsub.subscribe(REDIS_CHANNEL)
        self._task = asyncio.create_task(self._listen(), name="bus.redis")

    async def _listen(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("bus.redis_receive_failed")
                await asyncio.sleep(1)
                continue
            if message is None:
                continue
            try:
                event = json.loads(message["data"])
            except (ValueError, TypeError):
                log.warning("bus.redis_bad_message")
                continue
            await self._dispatch(event)

    async def publish(self, event: Event) -> None:
        await self._redis.publish(REDIS_CHANNEL, json.dumps({**event, "origin": self.node_id}, default=str))

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._pubsub.aclose()
        await self._redis.aclose()


class RabbitMQBus(_Dispatcher):
    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url

    async def start(self) -> None:
        import aio_pika

        self._connection = await aio_pika.connect_robust(self.url)
        self._channel = await self._connection.channel()
        self._exchange = await self._channel.declare_exchange(
            RABBIT_EXCHANGE, aio_pika.ExchangeType.FANOUT, durable=True
        )
        # Exclusive + auto-delete: the queue belongs to this node and vanishes with it.
        queue = await self._channel.declare_queue(
            f"parley.node.{self.node_id}", exclusive=True, auto_delete=True
        )
        await queue.bind(self._exchange)
        await queue.consume(self._on_message, no_ack=True)

    async def _on_message(self, message: Any) -> None:
        try:
            event = json.loads(message.body)
        except ValueError:
            log.warning("bus.rabbitmq_bad_message")
            return
        await self._dispatch(event)

    async def publish(self, event: Event) -> None:
        import aio_pika

        body = json.dumps({**event, "origin": self.node_id}, default=str).encode()
        await self._exchange.publish(aio_pika.Message(body, content_type="application/json"), routing_key="")

    async def stop(self) -> None:
        await self._connection.close()


def create_bus(backend: str, *, redis_url: str, rabbitmq_url: str) -> EventBus:
    if backend == "redis":
        return RedisBus(redis_url)
    if backend == "rabbitmq":
        return RabbitMQBus(rabbitmq_url)
    return MemoryBus()
