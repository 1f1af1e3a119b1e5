"""Two nodes on one bus: what one publishes, the other hears."""

from __future__ import annotations

import asyncio
import os

import pytest

from parley.realtime.bus import MemoryBus, RabbitMQBus, RedisBus

REDIS_URL = os.environ.get("PARLEY_TEST_REDIS_URL", "")
RABBITMQ_URL = os.environ.get("PARLEY_TEST_RABBITMQ_URL", "")


def _node(backend: str):
    if backend == "redis":
        if not REDIS_URL:
            pytest.skip("PARLEY_TEST_REDIS_URL is not set")
        return RedisBus(REDIS_URL)
    if not RABBITMQ_URL:
        pytest.skip("PARLEY_TEST_RABBITMQ_URL is not set")
    return RabbitMQBus(RABBITMQ_URL)


async def _collect(bus) -> list[dict]:
    received: list[dict] = []

    async def handler(event: dict) -> None:
        received.append(event)

    bus.subscribe(handler)
    return received


async def _wait_for(items: list, count: int, timeout_s: float = 5) -> None:
    async with asyncio.timeout(timeout_s):
        while len(items) < count:
            await asyncio.sleep(0.01)


async def test_memory_bus_delivers_to_local_handlers():
    bus = MemoryBus()
    received = await _collect(bus)
    await bus.publish({"type": "message.created", "id": 1})
    assert received == [{"type": "message.created", "id": 1, "origin": bus.node_id}]


@pytest.mark.services
@pytest.mark.parametrize("backend", ["redis", "rabbitmq"])
async def test_event_published_on_one_node_reaches_the_other(backend):
    node_a, node_b = _node(backend), _node(backend)
    await node_a.start()
    await node_b.start()
    try:
        heard_a = await _collect(node_a)
        heard_b = await _collect(node_b)
        await node_a.publish({"type": "message.created", "text": "你好"})
        await _wait_for(heard_b, 1)
        await _wait_for(heard_a, 1)  # the publisher's own node hears it too, through the broker
        assert heard_b[0]["text"] == "你好"
        assert heard_b[0]["origin"] == node_a.node_id
    finally:
        await node_a.stop()
        await node_b.stop()


@pytest.mark.services
async def test_rabbitmq_node_queue_disappears_with_the_node():
    import aio_pika

    node = _node("rabbitmq")
    await node.start()
    queue_name = f"parley.node.{node.node_id}"
    await node.stop()
    connection = await aio_pika.connect(RABBITMQ_URL)
    try:
        channel = await connection.channel()
        with pytest.raises(aio_pika.exceptions.ChannelClosed):
            await channel.declare_queue(queue_name, passive=True)
    finally:
        await connection.close()
