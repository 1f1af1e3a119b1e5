"""Publishing realtime events from business code, after the transaction commits."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from parley.context import Context
from parley.db import on_commit
from parley.realtime.bus import Event, EventBus, create_bus
from parley.realtime.hub import Hub

_BUS = "realtime.bus"
_HUB = "realtime.hub"


async def start_bus(ctx: Context) -> EventBus:
    """Creates and starts this process's bus (idempotent)."""
    bus: EventBus | None = ctx.extras.get(_BUS)
    if bus is None:
        settings = ctx.settings
        bus = create_bus(
            settings.event_bus.value, redis_url=settings.redis_url, rabbitmq_url=settings.rabbitmq_url
        )
        await bus.start()
        ctx.extras[_BUS] = bus
        ctx.on_close.append(bus.stop)
    return bus


def bus_of(ctx: Context) -> EventBus:
    bus: EventBus = ctx.extras[_BUS]
    return bus


def hub_of(ctx: Context) -> Hub:
    hub: Hub | None = ctx.extras.get(_HUB)
    if hub is None:
        hub = Hub(bus_of(ctx))
        ctx.extras[_HUB] = hub
    return hub


def publish_on_commit(session: AsyncSession, ctx: Context, event: Event) -> None:
    """Publishes ``event`` to every node once the session's transaction commits; never if it rolls back.

    A process without a bus (a tool, a test of one component) has no one to tell, and skips it.
    """
    if _BUS not in ctx.extras:
        return

    async def send() -> None:
        await bus_of(ctx).publish(event)

    on_commit(session, send)
