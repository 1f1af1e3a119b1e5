"""Running the pipeline over stored inbound events: inline after a webhook, and a sweeper for leftovers."""

from __future__ import annotations

from datetime import timedelta

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.automation.inbound import react as automation_react
from parley.automation.outbound import NO_PASSIVE, Responder
from parley.context import Context
from parley.conversations.pipeline import Outcome, process
from parley.db import savepoint
from parley.kit.types import utcnow
from parley.models import ChannelAccount
from parley.models import InboundEvent as InboundEventRow
from parley.realtime.service import publish_on_commit

log = structlog.get_logger()

SWEEP_AFTER = timedelta(seconds=5)
SWEEP_BATCH = 200


async def process_rows(
    session: AsyncSession,
    ctx: Context,
    *,
    account: ChannelAccount,
    rows: list[InboundEventRow],
    final: bool = False,
    responder: Responder | None = None,
) -> list[Outcome]:
    """Processes each row in its own savepoint, so one bad event cannot sink the others.

    A failure leaves the row ``pending`` with its error for the sweeper, or marks
    it ``failed`` when ``final`` (the sweeper's own attempt), so a poison event
    is visible instead of retried forever.
    """
    outcomes = []
    for row in rows:
        try:
            # Objects the failed attempt created are dropped and the ones it may have changed
            # expired; the account and the row itself stay usable for recording the failure.
            async with savepoint(session, keep=(ChannelAccount, InboundEventRow)):
                outcome = await process(session, account=account, row=row)
        except Exception as exc:
            log.exception("inbound.process_failed", inbound_event_id=row.id)
            row.error = f"{type(exc).__name__}: {exc}"[:2000]
            row.status = "failed" if final else "pending"
            continue
        # The bot answers first; only what it did not answer goes to a queue for people
        # (a flow that needs people hands off to a queue itself).
        if not await _automate(session, ctx, account, row, outcome, responder):
            await _route(session, ctx, account=account, row=row, outcome=outcome)
        for event in outcome.events:
            publish_on_commit(session, ctx, event)
        outcomes.append(outcome)
    return outcomes


async def _automate(
    session: AsyncSession,
    ctx: Context,
    account: ChannelAccount,
    row: InboundEventRow,
    outcome: Outcome,
    responder: Responder | None,
) -> bool:
    """Automatic answers (issue 8), in their own savepoint: a failing rule or flow never loses the message."""
    try:
        # keep=(object,): routing goes on with this message's objects when automation failed.
        async with savepoint(session, keep=(object,)):
            return await automation_react(
                session, ctx, account=account, row=row, outcome=outcome, responder=responder or NO_PASSIVE
            )
    except Exception:
        log.exception("automation.failed", inbound_event_id=row.id)
        return False


async def process_new(
    session: AsyncSession,
    ctx: Context,
    *,
    account: ChannelAccount,
    ids: list[int],
    responder: Responder | None = None,
) -> list[Outcome]:
    if not ids:
        return []
    rows = list(
        (
            await session.scalars(
                select(InboundEventRow).where(InboundEventRow.id.in_(ids)).order_by(InboundEventRow.id)
            )
        ).all()
    )
    return await process_rows(session, ctx, account=account, rows=rows, responder=responder)


async def sweep(session: AsyncSession, ctx: Context) -> int:
    """Processes events left pending (a failed inline attempt); returns how many it handled."""
    cutoff = utcnow() - SWEEP_AFTER
    rows = list(
        (
            await session.scalars(
                select(InboundEventRow)
                .where(InboundEventRow.status == "pending", InboundEventRow.received_at < cutoff)
                .order_by(InboundEventRow.id)
                .limit(SWEEP_BATCH)
            )
        ).all()
    )
    accounts: dict[object, ChannelAccount | None] = {}
    for row in rows:
        if row.account_id not in accounts:
            accounts[row.account_id] = await session.get(ChannelAccount, row.account_id)
        account = accounts[row.account_id]
        if account is not None:
            await process_rows(session, ctx, account=account, rows=[row], final=True)
    return len(rows)


async def _route(
    session: AsyncSession, ctx: Context, *, account: ChannelAccount, row: InboundEventRow, outcome: Outcome
) -> None:
    """Routing's entry rules (issue 7); a routing failure leaves the message in the inbox, unrouted."""
    from parley.routing.service import route_inbound

    if outcome.event is None:
        return
    try:
        async with savepoint(session, keep=(object,)):
            await route_inbound(session, ctx, account=account, event=outcome.event, outcome=outcome)
    except Exception:
        log.exception("inbound.routing_failed", inbound_event_id=row.id)
