"""Group commit for inbound webhooks: the work of many webhooks in one write transaction.

A webhook handler verifies and parses outside any transaction, then hands its
events to this process's :class:`Intake` and waits. The intake runs one write
transaction for everything that queued up while the previous one ran (at most
``max_batch`` webhooks), each webhook's storing and pipeline in a savepoint of
its own, commits once, publishes the realtime events, and only then answers
each waiting handler. So one transaction's overhead (the SQLite write lock,
``BEGIN``, the commit, a session) is shared by a whole group, while:

* nothing is acknowledged before it is committed: a failed commit fails every
  webhook of its group, and each is answered so that the platform retries
  (the dedupe keys store a retry once);
* one webhook's failure rolls back its own savepoint only, and that webhook
  alone is told to retry.

With nothing queued a webhook runs at once, alone, so a quiet system pays no
extra latency. Each ``parley serve`` process has its own intake; on PostgreSQL
their groups are ordinary concurrent transactions.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from parley.automation.outbound import Responder
from parley.channels.base import InboundEvent
from parley.channels.ingest import Stored, store_events, store_payloads
from parley.context import Context
from parley.conversations.batch import NotBatchable, Payload, batchable, process_batch, senders
from parley.db import savepoint, session_scope, writing_in_this_task
from parley.models import ChannelAccount

log = structlog.get_logger()

MAX_BATCH = 128
# Loop turns a group waits before it starts, when fewer than MAX_BATCH webhooks are queued.
GATHER_TURNS = 4
ACCOUNT_CACHE_LIMIT = 10_000

_KEY = "conversations.intake"


class AccountGone(Exception):
    """The account was deactivated or deleted after the webhook was verified."""


class StaleAccount(Exception):
    """The account changed (credentials, settings) after the webhook was verified with it."""


class GroupFailed(Exception):
    """The shared transaction did not commit: nothing of this webhook was stored."""


@dataclass(eq=False)
class Delivery:
    """One webhook's parsed events, waiting for its group's commit."""

    account: ChannelAccount
    events: list[InboundEvent]
    raw: str
    responder: Responder | None
    future: asyncio.Future[Stored]


# The work for one webhook inside its savepoint; ``account`` is the row as loaded in the group's session.
Work = Callable[[AsyncSession, ChannelAccount, Delivery], Awaitable[Stored]]
# The same work for a batch of webhooks at once (parley/conversations/batch.py), one Stored per payload.
# It runs in one savepoint; when it raises, the batch is rolled back and done webhook by webhook.
Batch = Callable[[AsyncSession, Sequence[Payload]], Awaitable[list[Stored]]]


class AccountCache:
    """Channel accounts by id for verifying webhooks, without a read transaction per request.

    A cached copy may be out of date; that is safe because the group's transaction
    re-reads the account and refuses a webhook verified with an older version
    (:class:`StaleAccount`, :class:`AccountGone`), and the handler then verifies
    again against a fresh copy.
    """

    def __init__(self, maker: async_sessionmaker[AsyncSession]) -> None:
        self.maker = maker
        self._accounts: dict[uuid.UUID, ChannelAccount] = {}

    async def get(self, account_id: uuid.UUID, *, fresh: bool = False) -> tuple[ChannelAccount | None, bool]:
        """The active account and whether it came from the cache (so reading it afresh could change it)."""
        if not fresh:
            found = self._accounts.get(account_id)
            if found is not None:
                return found, True
        async with self.maker() as session:
            account = await session.get(ChannelAccount, account_id)
        if account is None or not account.is_active:
            self._accounts.pop(account_id, None)
            return None, False
        if len(self._accounts) >= ACCOUNT_CACHE_LIMIT:
            self._accounts.clear()
        self._accounts[account_id] = account
        return account, False

    def forget(self, account_id: uuid.UUID) -> None:
        self._accounts.pop(account_id, None)


class Intake:
    """This process's group committer for one kind of per-webhook work."""

    def __init__(
        self,
        maker: async_sessionmaker[AsyncSession],
        work: Work,
        *,
        batch: Batch | None = None,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self.maker = maker
        self.work = work
        self.batch = batch
        self.max_batch = max_batch
        self.accounts = AccountCache(maker)
        self._queue: list[Delivery] = []
        self._runner: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        """Webhooks queued for the next group."""
        return len(self._queue)

    async def submit(
        self,
        account: ChannelAccount,
        events: list[InboundEvent],
        raw: str,
        responder: Responder | None = None,
    ) -> Stored:
        """Stores and processes one webhook's events in the next group; returns once that group committed.

        Raises :class:`GroupFailed` when the group did not commit, :class:`StaleAccount` or
        :class:`AccountGone` when the account changed since ``account`` was read, or what the
        webhook's own work raised (its savepoint rolled back; the rest of the group is unaffected).
        """
        if writing_in_this_task(self.maker):
            # The group would wait for the SQLite write lock this very task holds, forever.
            raise RuntimeError("webhook intake inside a write transaction on SQLite: finish that one first")
        future: asyncio.Future[Stored] = asyncio.get_running_loop().create_future()
        self._queue.append(Delivery(account, events, raw, responder, future))
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name="conversations.intake")
        return await future

    async def close(self) -> None:
        """Waits for the groups already queued (their handlers are waiting for an answer)."""
        if self._runner is not None:
            await asyncio.shield(self._runner)

    async def _run(self) -> None:
        try:
            while self._queue:
                if len(self._queue) < self.max_batch:
                    # Webhooks whose bytes have arrived are a few loop turns from being queued
                    # (parsed, verified, decrypted); letting them join costs microseconds, while a
                    # group's fixed cost (session, ten statements, commit) is paid per group.
                    for _ in range(GATHER_TURNS):
                        await asyncio.sleep(0)
                group, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
                # A handler cancelled before its group began (its client went away) is not stored.
                group = [d for d in group if not d.future.done()]
                if group:
                    await self._commit_group(group)
        finally:
            self._runner = None

    async def _commit_group(self, group: list[Delivery]) -> None:
        outcomes: dict[Delivery, Stored | BaseException] = {}
        try:
            async with session_scope(self.maker) as session:
                current = await self._current_accounts(session, group)
                ready: list[tuple[Delivery, ChannelAccount]] = []
                for delivery in group:
                    checked = self._check(current, delivery)
                    if isinstance(checked, ChannelAccount):
                        ready.append((delivery, checked))
                    else:
                        outcomes[delivery] = checked
                for batched, run in self._runs(ready):
                    done = await self._batch(session, run) if batched else None
                    if done is not None:
                        outcomes.update(done)
                        continue
                    for delivery, account in run:
                        outcomes[delivery] = await self._one(session, account, delivery)
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                log.exception("intake.group_failed", webhooks=len(group))
            failure = GroupFailed(f"the shared transaction did not commit: {type(exc).__name__}: {exc}")
            for delivery in group:
                if delivery.responder is not None:
                    delivery.responder.message = None
                if not delivery.future.done():
                    delivery.future.set_exception(failure)
            if not isinstance(exc, Exception):
                raise
            return
        for delivery, outcome in outcomes.items():
            if delivery.future.done():
                continue
            if isinstance(outcome, BaseException):
                delivery.future.set_exception(outcome)
            else:
                delivery.future.set_result(outcome)

    async def _current_accounts(
        self, session: AsyncSession, group: list[Delivery]
    ) -> dict[uuid.UUID, ChannelAccount]:
        ids = {d.account.id for d in group}
        rows = (await session.scalars(select(ChannelAccount).where(ChannelAccount.id.in_(ids)))).all()
        return {row.id: row for row in rows}

    def _check(
        self, current: dict[uuid.UUID, ChannelAccount], delivery: Delivery
    ) -> ChannelAccount | BaseException:
        """The account as the group's transaction reads it, or why the webhook is refused."""
        verified = delivery.account
        account = current.get(verified.id)
        if account is None or not account.is_active or account.type != verified.type:
            self.accounts.forget(verified.id)
            return AccountGone()
        if account.updated_at != verified.updated_at:
            self.accounts.forget(verified.id)
            return StaleAccount()
        return account

    def _runs(
        self, ready: list[tuple[Delivery, ChannelAccount]]
    ) -> Iterator[tuple[bool, list[tuple[Delivery, ChannelAccount]]]]:
        """The group in order, as batches (no sender twice in one) and single webhooks that can't be batched."""
        run: list[tuple[Delivery, ChannelAccount]] = []
        seen: set[tuple[uuid.UUID, str]] = set()
        for delivery, account in ready:
            if self.batch is None or not batchable(delivery.events):
                if run:
                    yield True, run
                    run, seen = [], set()
                yield False, [(delivery, account)]
                continue
            theirs = senders(account.id, delivery.events)
            if theirs & seen:
                yield True, run
                run, seen = [], set()
            run.append((delivery, account))
            seen |= theirs
        if run:
            yield True, run

    async def _batch(
        self, session: AsyncSession, run: list[tuple[Delivery, ChannelAccount]]
    ) -> dict[Delivery, Stored | BaseException] | None:
        """The run's webhooks done set-wise; None when they must go one by one (all of it rolled back)."""
        assert self.batch is not None  # noqa: S101  (only batched runs come here)
        payloads = [Payload(account, d.events, d.raw, d.responder) for d, account in run]
        try:
            async with savepoint(session, keep=(ChannelAccount,)):
                stored = await self.batch(session, payloads)
        except Exception as exc:
            for delivery, _account in run:
                _forget_reply(delivery)
            if isinstance(exc, NotBatchable):
                log.info("intake.batch_per_event", reason=str(exc), webhooks=len(run))
            else:
                # The per-event path isolates whichever webhook or step this was.
                log.warning("intake.batch_failed", webhooks=len(run), exc_info=True)
            return None
        return {delivery: result for (delivery, _account), result in zip(run, stored, strict=True)}

    async def _one(
        self, session: AsyncSession, account: ChannelAccount, delivery: Delivery
    ) -> Stored | BaseException:
        try:
            async with savepoint(session, keep=(ChannelAccount,)):
                return await self.work(session, account, delivery)
        except Exception as exc:
            log.exception("intake.webhook_failed", account_id=str(account.id))
            # The passive reply was written in the savepoint just rolled back.
            _forget_reply(delivery)
            return exc


def _forget_reply(delivery: Delivery) -> None:
    if delivery.responder is not None:
        delivery.responder.message = None
        delivery.responder.sent.clear()


def store_only(session: AsyncSession, account: ChannelAccount, delivery: Delivery) -> Awaitable[Stored]:
    """The minimal work: store the events, nothing else (the ceiling of ``parley bench inbound``)."""
    return store_events(session, account=account, events=delivery.events, raw=delivery.raw)


def pipeline(ctx: Context) -> Work:
    """The real work: store the events, then run the pipeline (contact, conversation, message, automation, routing)."""
    from parley.conversations.inbound import process_rows

    async def work(session: AsyncSession, account: ChannelAccount, delivery: Delivery) -> Stored:
        stored = await store_events(
            session, account=account, events=delivery.events, raw=delivery.raw, load=True
        )
        if stored.rows:
            await process_rows(session, ctx, account=account, rows=stored.rows, responder=delivery.responder)
        return stored

    return work


def store_only_batch(session: AsyncSession, payloads: Sequence[Payload]) -> Awaitable[list[Stored]]:
    """:func:`store_only` for a batch: one INSERT for all the payloads' events."""

    async def store() -> list[Stored]:
        stored, _new = await store_payloads(session, [(p.account, p.events, p.raw) for p in payloads])
        return stored

    return store()


def batch_pipeline(ctx: Context) -> Batch:
    """The real work for a batch of webhooks carrying customer messages (parley/conversations/batch.py)."""

    def batch(session: AsyncSession, payloads: Sequence[Payload]) -> Awaitable[list[Stored]]:
        return process_batch(session, ctx, payloads)

    return batch


def intake_of(ctx: Context) -> Intake:
    """This process's intake for webhooks (created on first use, drained when the context closes)."""
    found: Intake | None = ctx.extras.get(_KEY)
    if found is None:
        found = Intake(ctx.sessionmaker, pipeline(ctx), batch=batch_pipeline(ctx))
        ctx.extras[_KEY] = found
        ctx.on_close.append(found.close)
    return found
