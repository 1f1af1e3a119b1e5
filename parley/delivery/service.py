"""The delivery service: what the rest of Parley calls to send, track and operate outbound messages.

Business code never talks to a platform (DESIGN.md, "The path of a message"):
it calls :func:`enqueue` inside its own transaction, which writes the message
row and its outbox job together; the delivery workers do the rest. Status
webhooks come back through :func:`apply_status`.

Example::

    async with session_scope(ctx.sessionmaker) as session:
        message = await delivery.enqueue(
            session,
            account=account,
            message=OutboundMessage(to=openid, type=OutboundType.text, text="Hi",
                                    idempotency_key=delivery.new_idempotency_key()),
            priority=Priority.agent_reply,
            conversation_id=conversation.id,
            author_id=agent.id,
        )
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.channels.base import OutboundMessage
from parley.channels.registry import adapter_class
from parley.db import on_commit
from parley.delivery.flow import FlowBackend, Rate, flow_key, quota_api, quota_day
from parley.delivery.repository import outbox
from parley.kit.types import utcnow
from parley.models import (
    ChannelAccount,
    DeliveryLimit,
    Direction,
    Message,
    MessageStatus,
    OutboxJob,
    OutboxJobStatus,
    Priority,
)

# Local workers wait on these between polls; enqueue sets them after commit so a
# message written in this process goes out without waiting for the next poll.
_WAKE_EVENTS: set[asyncio.Event] = set()


def register_wakeup(event: asyncio.Event) -> None:
    _WAKE_EVENTS.add(event)


def unregister_wakeup(event: asyncio.Event) -> None:
    _WAKE_EVENTS.discard(event)


async def _wake() -> None:
    for event in list(_WAKE_EVENTS):
        event.set()


def new_idempotency_key() -> str:
    """A fresh key for a new message; a retry of the same message must reuse its key."""
    return uuid.uuid4().hex


def _message_row(
    account: ChannelAccount,
    message: OutboundMessage,
    *,
    priority: Priority,
    conversation_id: uuid.UUID | None,
    contact_id: uuid.UUID | None,
    author_id: uuid.UUID | None,
    now: datetime,
) -> Message:
    return Message(
        account_id=account.id,
        conversation_id=conversation_id,
        contact_id=contact_id,
        direction=Direction.outbound.value,
        kind="message",
        type=message.type.value,
        peer_id=message.to,
        sender_external_id=message.sender_external_id,
        text=message.text,
        content=message.model_dump(mode="json", exclude_none=True),
        status=MessageStatus.queued.value,
        priority=int(priority),
        idempotency_key=message.idempotency_key,
        author_id=author_id,
        created_at=now,
    )


def _job_row(account: ChannelAccount, message: OutboundMessage, row: Message, due_at: datetime) -> OutboxJob:
    sender = message.sender_external_id or account.external_id
    return OutboxJob(
        message_id=row.id,
        account_id=account.id,
        flow_key=flow_key(account.id, account.type, sender),
        quota_api=quota_api(account.type, message),
        priority=row.priority,
        status=OutboxJobStatus.pending.value,
        due_at=due_at,
        attempts=0,
        claims=0,
        created_at=row.created_at,
        updated_at=row.created_at,
    )


async def enqueue(
    session: AsyncSession,
    *,
    account: ChannelAccount,
    message: OutboundMessage,
    priority: Priority = Priority.automated,
    conversation_id: uuid.UUID | None = None,
    contact_id: uuid.UUID | None = None,
    author_id: uuid.UUID | None = None,
    not_before: datetime | None = None,
) -> Message:
    """Queues one outbound message: writes it (status ``queued``) and its outbox job in the caller's transaction.

    Args:
        session: the caller's write session; nothing is sent unless it commits.
        account: the channel account that sends it.
        message: what to send; ``message.idempotency_key`` must be unique per message
            (``new_idempotency_key()``) and is reused by every retry. A key that was
            already queued violates ``uq_messages_idempotency_key``, so a caller may
            use a deterministic key to make its own retries harmless.
        priority: claim order; agent replies go before automated, notifications and bulk.
        not_before: earliest send time (scheduled sends); default now.

    Returns:
        The message row (flushed, so it has its id).
    """
    rows = await enqueue_many(
        session,
        account=account,
        messages=[message],
        priority=priority,
        conversation_id=conversation_id,
        contact_id=contact_id,
        author_id=author_id,
        not_before=not_before,
    )
    return rows[0]


async def enqueue_many(
    session: AsyncSession,
    *,
    account: ChannelAccount,
    messages: list[OutboundMessage],
    priority: Priority = Priority.bulk,
    conversation_id: uuid.UUID | None = None,
    contact_id: uuid.UUID | None = None,
    author_id: uuid.UUID | None = None,
    not_before: datetime | None = None,
) -> list[Message]:
    """Queues many messages of one account at once (broadcasts): two multi-row INSERTs, one wake-up."""
    now = utcnow()
    due_at = not_before or now
    rows = [
        _message_row(
            account,
            m,
            priority=priority,
            conversation_id=conversation_id,
            contact_id=contact_id,
            author_id=author_id,
            now=now,
        )
        for m in messages
    ]
    session.add_all(rows)
    await session.flush()
    session.add_all([_job_row(account, m, row, due_at) for m, row in zip(messages, rows, strict=True)])
    await session.flush()
    on_commit(session, _wake)
    return rows


# --- statuses from the platform -------------------------------------------------------------

_RANK = {
    MessageStatus.queued.value: 0,
    MessageStatus.sent.value: 1,
    MessageStatus.delivered.value: 2,
    MessageStatus.read.value: 3,
}


async def apply_status(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    platform_message_id: str,
    status: MessageStatus | str,
    at: datetime | None = None,
    error_code: str | int | None = None,
    error_reason: str | None = None,
) -> Message | None:
    """Applies a platform status (sent, delivered, read, failed) to the message it names.

    Statuses only move forward (sent → delivered → read), because platforms
    deliver webhooks at least once and out of order (PROTOCOLS.md 2.2): a late
    ``delivered`` after ``read`` changes nothing. ``read`` without ``delivered``
    fills both. ``failed`` is accepted until the message is delivered
    (WhatsApp may report failure after ``sent``). Returns the message, or None
    if no message has that platform id.
    """
    status = MessageStatus(status)
    at = at or utcnow()
    message = await session.scalar(
        select(Message).where(
            Message.account_id == account_id, Message.platform_message_id == platform_message_id
        )
    )
    if message is None:
        return None
    current = message.status
    if status is MessageStatus.failed:
        if current in (MessageStatus.queued, MessageStatus.sent):
            message.status = MessageStatus.failed.value
            message.failed_at = at
            message.error_code = None if error_code is None else str(error_code)[:64]
            message.error_reason = error_reason
    elif status.value in _RANK and current in _RANK and _RANK[status.value] > _RANK[current]:
        message.status = status.value
        if message.sent_at is None:
            message.sent_at = at
        if status in (MessageStatus.delivered, MessageStatus.read) and message.delivered_at is None:
            message.delivered_at = at
        if status is MessageStatus.read:
            message.read_at = at
    await session.flush()
    return message


# --- limits -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccountLimits:
    """The effective flow limits of one account: its overrides over the adapter's defaults."""

    rate: Rate
    daily_quotas: dict[str, int] = field(default_factory=dict)


async def get_limits(session: AsyncSession, account: ChannelAccount) -> AccountLimits:
    """Gets the effective rate and daily quotas of an account."""
    row = await session.get(DeliveryLimit, account.id)
    return effective_limits(account.type, row)


def effective_limits(channel_type: str, row: DeliveryLimit | None) -> AccountLimits:
    caps = adapter_class(channel_type).capabilities
    per_s = caps.default_rate_per_s if row is None or row.rate_per_s is None else row.rate_per_s
    quotas = {k: int(v) for k, v in caps.daily_quotas.items()}
    if row is not None:
        quotas.update({k: int(v) for k, v in (row.daily_quotas or {}).items()})
    return AccountLimits(rate=Rate.of(per_s, row.burst if row else None), daily_quotas=quotas)


async def set_limits(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    rate_per_s: float | None = None,
    burst: float | None = None,
    daily_quotas: dict[str, int] | None = None,
) -> DeliveryLimit:
    """Sets an account's overrides: ``rate_per_s`` None → adapter default, 0 → unlimited."""
    row = await session.get(DeliveryLimit, account_id)
    if row is None:
        row = DeliveryLimit(account_id=account_id, daily_quotas={})
        session.add(row)
    row.rate_per_s = rate_per_s
    row.burst = burst
    row.daily_quotas = dict(daily_quotas or {})
    row.updated_at = utcnow()
    await session.flush()
    return row


# --- operations ---------------------------------------------------------------------------


async def retry_jobs(
    session: AsyncSession, *, job_ids: list[int] | None = None, account_id: uuid.UUID | None = None
) -> int:
    """Puts failed and dead-lettered jobs back in the queue (all of them when ``job_ids`` is None)."""
    count = await outbox.requeue(session, now=utcnow(), job_ids=job_ids, account_id=account_id)
    if count:
        on_commit(session, _wake)
    return count


@dataclass
class Summary:
    depth: list[dict[str, Any]]
    depth_by_priority: dict[str, int]
    send_rate_per_s: float
    sent_last_minute: dict[str, int]
    quotas: list[dict[str, Any]]
    failures: list[dict[str, Any]]
    oldest_waiting: dict[str, Any] | None
    dead_letters: list[dict[str, Any]]
    accounts: dict[str, str]


async def summary(
    session: AsyncSession, *, flow: FlowBackend, now: datetime | None = None, dead_letter_limit: int = 100
) -> Summary:
    """Gets the figures of the operations page (and the Prometheus gauges)."""
    now = now or utcnow()
    accounts = list((await session.scalars(select(ChannelAccount))).all())
    names = {str(a.id): a.name for a in accounts}
    depth_rows = await outbox.depth(session)
    by_priority = {p.name: 0 for p in Priority}
    for _account, priority, count in depth_rows:
        by_priority[Priority(priority).name] += count
    sent = await outbox.sent_since(session, now - timedelta(seconds=60))
    quotas: list[dict[str, Any]] = []
    for account in accounts:
        limits = await get_limits(session, account)
        day, reset_at = quota_day(account.type, now)
        for api in sorted(
            {"custom_send", "template_send", "mass_send", "messages"} & set(limits.daily_quotas)
        ):
            used = await flow.quota_used(session, account.id, api, day)
            quotas.append(
                {
                    "account_id": str(account.id),
                    "account": account.name,
                    "api": api,
                    "used": used,
                    "limit": limits.daily_quotas[api],
                    "reset_at": reset_at,
                }
            )
    oldest = await outbox.oldest_waiting(session)
    letters = await outbox.dead_letters(session, limit=dead_letter_limit)
    return Summary(
        depth=[
            {
                "account_id": str(a),
                "account": names.get(str(a), str(a)),
                "priority": Priority(p).name,
                "count": c,
            }
            for a, p, c in sorted(depth_rows, key=lambda r: (str(r[0]), r[1]))
        ],
        depth_by_priority=by_priority,
        send_rate_per_s=round(sum(c for _a, c in sent) / 60.0, 2),
        sent_last_minute={str(a): c for a, c in sent},
        quotas=quotas,
        failures=[{"status": s, "code": code, "count": c} for s, code, c in await outbox.failures(session)],
        oldest_waiting=(
            {
                "job_id": oldest[0],
                "created_at": oldest[1],
                "age_s": round((now - oldest[1]).total_seconds(), 1),
            }
            if oldest
            else None
        ),
        dead_letters=[
            {
                "job_id": r.id,
                "status": r.status,
                "account_id": str(r.account_id),
                "account": names.get(str(r.account_id), str(r.account_id)),
                "priority": Priority(r.priority).name,
                "attempts": r.attempts,
                "error_code": r.last_error_code,
                "error": r.last_error,
                "finished_at": r.finished_at,
                "message_id": r.message_id,
                "to": r.peer_id,
                "type": r.type,
            }
            for r in letters
        ],
        accounts=names,
    )
