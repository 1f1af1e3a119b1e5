"""Flows in the database: versions, runs that survive restarts, the worker's due work, dry runs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

import httpx
import structlog
from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from parley.automation import contact_ops
from parley.automation.flows.definition import FlowDefinition, HttpNode, parse_definition
from parley.automation.flows.engine import RunState, Status, StepRecord, advance, http_request
from parley.automation.handoff import active_conversation, hand_off
from parley.automation.outbound import NO_PASSIVE, Responder, send_reply
from parley.automation.schemas import Reply, render
from parley.contacts.tags import tags_of
from parley.context import Context
from parley.db import on_commit
from parley.exceptions import BadRequest, NotFound
from parley.kit.types import utcnow
from parley.models import (
    ChannelAccount,
    Contact,
    ContactIdentity,
    Flow,
    FlowRun,
    FlowStep,
    FlowVersion,
)

log = structlog.get_logger()

HTTP_LEASE = timedelta(seconds=120)

_WAKE: set[asyncio.Event] = set()


def register_wakeup(event: asyncio.Event) -> None:
    _WAKE.add(event)


def unregister_wakeup(event: asyncio.Event) -> None:
    _WAKE.discard(event)


async def _wake() -> None:
    for event in list(_WAKE):
        event.set()


# --- definitions and versions ------------------------------------------------------------------


async def create_flow(
    session: AsyncSession,
    *,
    name: str,
    account_id: uuid.UUID | None,
    definition: FlowDefinition,
    actor_id: uuid.UUID | None,
) -> Flow:
    if account_id is not None and await session.get(ChannelAccount, account_id) is None:
        raise NotFound("No such channel account")
    flow = Flow(id=uuid.uuid4(), name=name, account_id=account_id, current_version=0, is_active=True)
    session.add(flow)
    await session.flush()
    await publish_version(session, flow, definition, actor_id=actor_id)
    return flow


async def publish_version(
    session: AsyncSession, flow: Flow, definition: FlowDefinition, *, actor_id: uuid.UUID | None
) -> FlowVersion:
    """A new immutable version; new runs use it at once, runs in progress keep theirs."""
    number = (
        int(
            await session.scalar(
                select(func.coalesce(func.max(FlowVersion.version), 0)).where(FlowVersion.flow_id == flow.id)
            )
            or 0
        )
        + 1
    )
    version = FlowVersion(
        id=uuid.uuid4(),
        flow_id=flow.id,
        version=number,
        definition=definition.model_dump(mode="json", exclude_none=True),
        created_by_id=actor_id,
        created_at=utcnow(),
    )
    session.add(version)
    flow.current_version = number
    flow.updated_at = utcnow()
    await session.flush()
    return version


async def get_flow(session: AsyncSession, flow_id: uuid.UUID) -> Flow:
    flow = await session.get(Flow, flow_id)
    if flow is None:
        raise NotFound("No such flow")
    return flow


async def current_version(session: AsyncSession, flow: Flow) -> FlowVersion:
    version = await session.scalar(
        select(FlowVersion).where(FlowVersion.flow_id == flow.id, FlowVersion.version == flow.current_version)
    )
    if version is None:
        raise NotFound("The flow has no published version")
    return version


async def list_flows(session: AsyncSession) -> Sequence[Flow]:
    return (await session.scalars(select(Flow).order_by(Flow.name))).all()


async def list_versions(session: AsyncSession, flow_id: uuid.UUID) -> Sequence[FlowVersion]:
    return (
        await session.scalars(
            select(FlowVersion).where(FlowVersion.flow_id == flow_id).order_by(FlowVersion.version.desc())
        )
    ).all()


# --- real runs -----------------------------------------------------------------------------


@dataclass
class RunEffects:
    """Side effects of a real run: messages out, contact writes, hand-off."""

    session: AsyncSession
    ctx: Context
    run: FlowRun
    account: ChannelAccount | None
    contact: Contact | None
    peer_id: str | None
    responder: Responder
    sent: list[int] = field(default_factory=list)

    async def send(self, node_id: str, reply: Reply, variables: dict[str, Any]) -> dict[str, Any]:
        if self.account is None or self.peer_id is None:
            return {"skipped": "no channel to send on"}
        # One key per run, node and visit: a retried transaction cannot send twice.
        key = f"flow:{self.run.id.hex}:{node_id}:{len(self.sent)}:{int(utcnow().timestamp() * 1000)}"
        row = await send_reply(
            self.session,
            account=self.account,
            to=self.peer_id,
            reply=reply,
            conversation_id=self.run.conversation_id,
            contact_id=self.run.contact_id,
            responder=self.responder,
            key=key[:64],
            variables=variables,
        )
        self.sent.append(row.id)
        return {
            "message_id": row.id,
            "type": reply.type,
            "text": render(reply.text, variables) if reply.text else None,
            "passive": bool(row.content.get("passive")),
        }

    async def set_attribute(self, name: str, value: Any) -> None:
        if self.contact is not None:
            await contact_ops.set_attribute(self.session, self.contact.id, name, value)

    async def add_tag(self, name: str) -> None:
        if self.contact is not None:
            await contact_ops.add_tag(self.session, self.contact.id, name)

    async def hand_off(self, queue_id: uuid.UUID, note: str | None) -> dict[str, Any]:
        conversation_id = await self._conversation_id()
        if conversation_id is None:
            return {"skipped": "no conversation to hand off"}
        await hand_off(self.session, self.ctx, conversation_id=conversation_id, queue_id=queue_id, note=note)
        return {"conversation_id": str(conversation_id)}

    async def _conversation_id(self) -> uuid.UUID | None:
        if self.run.conversation_id is not None:
            return self.run.conversation_id
        if self.contact is None or self.account is None:
            return None
        active = await active_conversation(
            self.session, contact_id=self.contact.id, account_id=self.account.id
        )
        self.run.conversation_id = active.id
        return active.id

    async def contact_view(self) -> dict[str, Any]:
        if self.contact is None:
            return {}
        c = self.contact
        tags = [tag.name for tag, _link in await tags_of(self.session, c.id)]
        return {
            "display_name": c.display_name,
            "phone": c.phone,
            "email": c.email,
            "language": c.language,
            "city": c.city,
            "country": c.country,
            "lifecycle_stage": c.lifecycle_stage,
            "attributes": dict(c.attributes or {}),
            "tags": tags,
        }


async def _peer_id(session: AsyncSession, run: FlowRun) -> str | None:
    if run.trigger.get("peer_id"):
        return str(run.trigger["peer_id"])
    if run.contact_id is None or run.account_id is None:
        return None
    identity = await session.scalar(
        select(ContactIdentity)
        .where(ContactIdentity.contact_id == run.contact_id, ContactIdentity.account_id == run.account_id)
        .limit(1)
    )
    return identity.value if identity is not None else None


async def _effects(session: AsyncSession, ctx: Context, run: FlowRun, responder: Responder) -> RunEffects:
    account = await session.get(ChannelAccount, run.account_id) if run.account_id else None
    contact = await session.get(Contact, run.contact_id) if run.contact_id else None
    return RunEffects(session, ctx, run, account, contact, await _peer_id(session, run), responder)


async def _record(session: AsyncSession, run: FlowRun, steps: list[StepRecord]) -> None:
    if not steps:
        return
    last = int(
        await session.scalar(
            select(func.coalesce(func.max(FlowStep.seq), 0)).where(FlowStep.run_id == run.id)
        )
        or 0
    )
    now = utcnow()
    for offset, step in enumerate(steps, start=1):
        session.add(
            FlowStep(
                run_id=run.id,
                seq=last + offset,
                node_id=step.node_id,
                type=step.type,
                detail=step.detail,
                created_at=now,
            )
        )


async def _drive(
    session: AsyncSession,
    ctx: Context,
    run: FlowRun,
    *,
    responder: Responder,
    reply: str | None = None,
    http_result: dict[str, Any] | None = None,
    timed_out: bool = False,
) -> list[StepRecord]:
    version = await session.get(FlowVersion, run.version_id)
    if version is None:
        raise NotFound("The run's flow version is gone")
    definition = FlowDefinition.model_validate(version.definition)
    state = RunState(
        node_id=run.node_id,
        status=run.status,
        variables=dict(run.variables),
        wake_at=run.wake_at,
        error=run.error,
    )
    effects = await _effects(session, ctx, run, responder)
    now = utcnow()
    try:
        steps = await advance(
            definition, state, effects, now=now, reply=reply, http_result=http_result, timed_out=timed_out
        )
    except Exception as exc:  # a node's side effect failed: the run stops visibly, the message still stands
        log.exception("flow.step_failed", run_id=str(run.id))
        state.status, state.error = Status.failed, f"{type(exc).__name__}: {exc}"[:2000]
        steps = [StepRecord(state.node_id or "?", "error", {"error": state.error})]
    run.node_id, run.status, run.variables, run.wake_at, run.error = (
        state.node_id,
        state.status,
        state.variables,
        state.wake_at,
        state.error,
    )
    run.updated_at = now
    if state.status in Status.DONE:
        run.finished_at = now
    await _record(session, run, steps)
    await session.flush()
    if state.status == Status.running:
        on_commit(session, _wake)
    return steps


async def start_run(
    session: AsyncSession,
    ctx: Context,
    *,
    flow_id: uuid.UUID,
    account: ChannelAccount | None,
    contact: Contact | None,
    conversation_id: uuid.UUID | None,
    peer_id: str | None,
    trigger: dict[str, Any],
    variables: dict[str, Any] | None = None,
    responder: Responder = NO_PASSIVE,
) -> FlowRun | None:
    """Starts the flow's current version for a contact; a contact already in this flow is not started twice."""
    flow = await get_flow(session, flow_id)
    if not flow.is_active:
        return None
    if contact is not None:
        running = await session.scalar(
            select(FlowRun.id).where(
                FlowRun.flow_id == flow.id,
                FlowRun.contact_id == contact.id,
                FlowRun.status.in_(Status.WAITING),
                FlowRun.dry_run.is_(False),
            )
        )
        if running is not None:
            return None
    version = await current_version(session, flow)
    definition = FlowDefinition.model_validate(version.definition)
    now = utcnow()
    run = FlowRun(
        id=uuid.uuid4(),
        flow_id=flow.id,
        version_id=version.id,
        version=version.version,
        account_id=account.id if account else None,
        contact_id=contact.id if contact else None,
        conversation_id=conversation_id,
        status=Status.running,
        node_id=definition.start,
        variables=dict(variables or {}),
        trigger={**trigger, **({"peer_id": peer_id} if peer_id else {})},
        created_at=now,
        updated_at=now,
    )
    session.add(run)
    await session.flush()
    await _drive(session, ctx, run, responder=responder)
    return run


# Asked for every inbound message, nearly always answered "none": a prebuilt Core statement for the
# id, and the run itself loaded only when there is one.
_RUNS = cast(Table, FlowRun.__table__)
_WAITING_RUN = (
    select(_RUNS.c.id)
    .where(
        _RUNS.c.contact_id == bindparam("contact_id"),
        _RUNS.c.account_id == bindparam("account_id"),
        _RUNS.c.status == Status.waiting_reply,
        _RUNS.c.dry_run.is_(False),
    )
    .order_by(_RUNS.c.created_at.desc())
    .limit(1)
)


async def waiting_run(
    session: AsyncSession, *, contact_id: uuid.UUID, account_id: uuid.UUID
) -> FlowRun | None:
    run_id = await session.scalar(_WAITING_RUN, {"contact_id": contact_id, "account_id": account_id})
    return await session.get(FlowRun, run_id) if run_id is not None else None


async def resume_with_reply(
    session: AsyncSession,
    ctx: Context,
    run: FlowRun,
    text: str,
    *,
    conversation_id: uuid.UUID | None,
    responder: Responder,
) -> list[StepRecord]:
    if run.conversation_id is None:
        run.conversation_id = conversation_id
    return await _drive(session, ctx, run, responder=responder, reply=text)


# --- the worker: timeouts, waits and HTTP calls --------------------------------------------------


async def due_runs(session: AsyncSession, *, limit: int = 50) -> Sequence[FlowRun]:
    return (
        await session.scalars(
            select(FlowRun)
            .where(
                FlowRun.status.in_(Status.WAITING), FlowRun.wake_at <= utcnow(), FlowRun.dry_run.is_(False)
            )
            .order_by(FlowRun.wake_at)
            .limit(limit)
        )
    ).all()


async def call_http(
    node: HttpNode, variables: dict[str, Any], client: httpx.AsyncClient | None = None
) -> dict[str, Any]:
    """The node's request with retries on network errors and 5xx; never raises."""
    request = http_request(node, variables)
    attempts = 0
    last_error: str | None = None
    status: int | None = None
    own = client is None
    http = client or httpx.AsyncClient()
    try:
        for attempt in range(node.retries + 1):
            attempts = attempt + 1
            try:
                response = await http.request(
                    request["method"],
                    request["url"],
                    headers=request["headers"],
                    json=request["json"],
                    timeout=node.timeout_s,
                )
            except httpx.HTTPError as exc:
                last_error, status = f"{type(exc).__name__}: {exc}"[:500], None
            else:
                status = response.status_code
                if response.status_code < 400:
                    try:
                        body: Any = response.json()
                    except ValueError:
                        body = response.text
                    return {"ok": True, "status": status, "body": body, "attempts": attempts}
                last_error = f"HTTP {response.status_code}"
                if response.status_code < 500:
                    break  # the service said no; asking again will not change its mind
            if attempt < node.retries:
                await asyncio.sleep(min(0.2 * 2**attempt, 2.0))
    finally:
        if own:
            await http.aclose()
    return {"ok": False, "status": status, "error": last_error, "attempts": attempts}


async def tick(ctx: Context) -> int:
    """One pass over due runs: timeouts and waits advance in place; HTTP calls are leased, made, then applied."""
    from parley.db import session_scope

    calls: list[tuple[uuid.UUID, str, HttpNode, dict[str, Any]]] = []
    handled = 0
    # A read first: on SQLite a write transaction every second would queue behind (and delay) delivery.
    async with session_scope(ctx.sessionmaker, write=False) as session:
        due = await session.scalar(
            select(FlowRun.id)
            .where(
                FlowRun.status.in_(Status.WAITING), FlowRun.wake_at <= utcnow(), FlowRun.dry_run.is_(False)
            )
            .limit(1)
        )
    if due is None:
        return 0
    async with session_scope(ctx.sessionmaker) as session:
        for run in await due_runs(session):
            handled += 1
            if run.status == Status.running:
                version = await session.get(FlowVersion, run.version_id)
                if version is None or run.node_id is None:
                    run.status, run.error = Status.failed, "flow version missing"
                    continue
                node = FlowDefinition.model_validate(version.definition).node(run.node_id)
                if not isinstance(node, HttpNode):
                    await _drive(session, ctx, run, responder=NO_PASSIVE)
                    continue
                # Leased: another worker will not make the same call while this one does.
                run.wake_at = utcnow() + HTTP_LEASE
                calls.append((run.id, run.node_id, node, dict(run.variables)))
            else:
                await _drive(session, ctx, run, responder=NO_PASSIVE, timed_out=True)
    for run_id, node_id, node, variables in calls:
        result = await call_http(node, variables)
        result["request"] = http_request(node, variables)
        async with session_scope(ctx.sessionmaker) as session:
            current = await session.get(FlowRun, run_id)
            if current is None or current.status != Status.running or current.node_id != node_id:
                continue
            await _drive(session, ctx, current, responder=NO_PASSIVE, http_result=result)
    return handled


async def run_steps(session: AsyncSession, run_id: uuid.UUID) -> tuple[FlowRun, Sequence[FlowStep]]:
    run = await session.get(FlowRun, run_id)
    if run is None:
        raise NotFound("No such run")
    steps = (
        await session.scalars(select(FlowStep).where(FlowStep.run_id == run_id).order_by(FlowStep.seq))
    ).all()
    return run, steps


async def list_runs(session: AsyncSession, flow_id: uuid.UUID, *, limit: int = 50) -> Sequence[FlowRun]:
    return (
        await session.scalars(
            select(FlowRun).where(FlowRun.flow_id == flow_id).order_by(FlowRun.created_at.desc()).limit(limit)
        )
    ).all()


async def cancel_waiting(session: AsyncSession, run_id: uuid.UUID) -> None:
    await session.execute(
        update(FlowRun)
        .where(FlowRun.id == run_id, FlowRun.status.in_(Status.WAITING))
        .values(status=Status.failed, error="cancelled", finished_at=utcnow(), wake_at=None)
    )


# --- dry runs ----------------------------------------------------------------------------------


@dataclass
class DryEffects:
    """Records what a run would do; sends, writes and hands off nothing."""

    contact: dict[str, Any]

    async def send(self, node_id: str, reply: Reply, variables: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": reply.type,
            "text": render(reply.text, variables) if reply.text else None,
            "dry_run": True,
        }

    async def set_attribute(self, name: str, value: Any) -> None:
        self.contact.setdefault("attributes", {})[name] = value

    async def add_tag(self, name: str) -> None:
        tags = self.contact.setdefault("tags", [])
        if name not in tags:
            tags.append(name)

    async def hand_off(self, queue_id: uuid.UUID, note: str | None) -> dict[str, Any]:
        return {"dry_run": True}

    async def contact_view(self) -> dict[str, Any]:
        return self.contact


async def dry_run(
    definition: FlowDefinition,
    *,
    contact: dict[str, Any] | None = None,
    variables: dict[str, Any] | None = None,
    replies: list[str] | None = None,
    http_responses: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Runs the definition in memory: scripted customer replies answer the asks in order, HTTP nodes
    answer with ``http_responses[node_id]`` or their ``sample_response`` (nothing is called), waits pass.
    """
    effects = DryEffects(contact=dict(contact or {}))
    state = RunState(node_id=definition.start, status=Status.running, variables=dict(variables or {}))
    pending = list(replies or [])
    moment = now or utcnow()
    steps: list[StepRecord] = []
    for _ in range(100):
        taken = await advance(definition, state, effects, now=moment)
        steps.extend(taken)
        if state.status in Status.DONE:
            break
        node: Any = definition.node(state.node_id or "")
        if state.status == Status.waiting_reply:
            if not pending:
                steps.append(StepRecord(node.id, "waiting", {"for": "reply"}))
                break
            steps.extend(await advance(definition, state, effects, now=moment, reply=pending.pop(0)))
        elif state.status == Status.waiting_time:
            steps.extend(await advance(definition, state, effects, now=moment, timed_out=True))
        elif state.status == Status.running and isinstance(node, HttpNode):
            answer = (http_responses or {}).get(node.id, node.sample_response)
            result = (
                {"ok": True, "status": 200, "body": answer, "attempts": 0}
                if answer is not None
                else {"ok": False, "status": None, "error": "no sample response for a dry run", "attempts": 0}
            )
            steps.extend(await advance(definition, state, effects, now=moment, http_result=result))
        if state.status in Status.DONE:
            break
    return {
        "status": state.status,
        "variables": state.variables,
        "contact": effects.contact,
        "error": state.error,
        "steps": [{"node_id": s.node_id, "type": s.type, "detail": s.detail} for s in steps],
    }


def parse_or_400(source: str | dict[str, Any]) -> FlowDefinition:
    from parley.automation.flows.definition import DefinitionError

    try:
        return parse_definition(source)
    except DefinitionError as exc:
        raise BadRequest("Invalid flow definition: " + "; ".join(exc.errors)) from exc
