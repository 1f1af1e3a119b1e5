"""Console pages: the wallboard (``/routing``) and Settings → Routing (queues, members, rules, capacity)."""

from __future__ import annotations

import contextlib
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.auth.dependencies import DBSession
from parley.auth.permissions import Permission
from parley.auth.service import Principal
from parley.exceptions import ParleyError
from parley.models import (
    ChannelAccount,
    EntryRule,
    EntryStatus,
    QueueEntry,
    QueueMember,
    Role,
    RoleCapacity,
    RoutingAgent,
    RoutingQueue,
    Strategy,
    User,
)
from parley.routing import admin
from parley.routing.hours import DAYS, hours_of
from parley.routing.schemas import CapacityWrite, MemberWrite, QueueWrite, RuleWrite
from parley.routing.wallboard import wallboard
from parley.web.auth import page
from parley.web.i18n import Translator
from parley.web.rendering import render, request_locale

router = APIRouter(include_in_schema=False)
PageRoutingRead = Annotated[Principal, Depends(page(Permission.operations_read))]
PageRoutingWrite = Annotated[Principal, Depends(page(Permission.operations_write))]

PRESENCES = ("online", "away", "offline")


@router.get("/routing", response_class=HTMLResponse)
async def wallboard_page(request: Request, session: DBSession, principal: PageRoutingRead) -> HTMLResponse:
    t = Translator(request_locale(request, principal))
    strings = {
        "no_queues": t("routing.no_queues"),
        "closed": t("routing.closed"),
        "presence": {p: t(f"routing.presence.{p}") for p in PRESENCES},
    }
    return render(
        request, "routing/wallboard.html", principal, board=await wallboard(session), strings=strings
    )


# --- Settings → Routing ------------------------------------------------------------------------


def _lines(value: str) -> list[str]:
    return [part.strip() for chunk in value.splitlines() for part in chunk.split(",") if part.strip()]


def _pairs(value: str) -> dict[str, str]:
    pairs = {}
    for line in value.splitlines():
        if "=" in line:
            key, _, val = line.partition("=")
            if key.strip():
                pairs[key.strip()] = val.strip()
    return pairs


def _intervals(value: str) -> list[list[str]]:
    out = []
    for part in _lines(value):
        start, sep, end = part.partition("-")
        out.append([start.strip(), end.strip()] if sep else [part, ""])
    return out


def _int(value: Any) -> int | None:
    text = str(value or "").strip()
    return int(text) if text.lstrip("-").isdigit() else None


def _queue_from_form(form: Any) -> QueueWrite:
    minutes = _int(form.get("overflow_after_min"))
    return QueueWrite.model_validate(
        {
            "name": str(form.get("name", "")).strip(),
            "description": str(form.get("description", "")),
            "is_active": form.get("is_active") == "on",
            "strategy": form.get("strategy") or Strategy.longest_waiting,
            "hours": {
                "timezone": str(form.get("timezone") or "UTC").strip(),
                "days": {d: _intervals(str(form.get(f"day_{d}", ""))) for d in DAYS if form.get(f"day_{d}")},
                "holidays": _lines(str(form.get("holidays", ""))),
            },
            "off_hours_reply": str(form.get("off_hours_reply", "")),
            "overflow_after_s": minutes * 60 if minutes else None,
            "overflow_queue_id": form.get("overflow_queue_id") or None,
            "max_length": _int(form.get("max_length")),
            "full_reply": str(form.get("full_reply", "")),
            "last_agent_window_s": (_int(form.get("last_agent_window_min")) or 0) * 60,
            "vip_rule": {
                "tags": _lines(str(form.get("vip_tags", ""))),
                "attributes": _pairs(str(form.get("vip_attributes", ""))),
            },
            "service_level_s": _int(form.get("service_level_s")) or 60,
            "notice_interval_s": _int(form.get("notice_interval_s")) or 0,
            "waiting_reply": str(form.get("waiting_reply", "")),
        }
    )


def _error_text(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
    if isinstance(exc, ParleyError):
        return exc.message
    return str(exc)


async def _settings(
    request: Request,
    session: DBSession,
    principal: Principal,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    queues = list((await session.scalars(select(RoutingQueue).order_by(RoutingQueue.name))).all())
    counts = dict(
        (
            await session.execute(select(QueueMember.queue_id, func.count()).group_by(QueueMember.queue_id))
        ).all()
    )
    waiting = dict(
        (
            await session.execute(
                select(QueueEntry.queue_id, func.count())
                .where(QueueEntry.status == EntryStatus.waiting)
                .group_by(QueueEntry.queue_id)
            )
        ).all()
    )
    rules = list(
        (await session.scalars(select(EntryRule).order_by(EntryRule.position, EntryRule.name))).all()
    )
    roles = list((await session.scalars(select(Role).order_by(Role.name))).all())
    role_caps = dict((await session.execute(select(RoleCapacity.role_id, RoleCapacity.capacity))).all())
    accounts = list((await session.scalars(select(ChannelAccount).order_by(ChannelAccount.name))).all())
    return render(
        request,
        "settings/routing.html",
        principal,
        status_code=status_code,
        queues=queues,
        member_counts=counts,
        waiting=waiting,
        rules=rules,
        queue_names={q.id: q.name for q in queues},
        account_names={a.id: a.name for a in accounts},
        accounts=accounts,
        roles=roles,
        role_caps=role_caps,
        strategies=list(Strategy),
        error=error,
    )


@router.get("/settings/routing", response_class=HTMLResponse)
async def routing_settings(request: Request, session: DBSession, principal: PageRoutingWrite) -> HTMLResponse:
    return await _settings(request, session, principal)


@router.post("/settings/routing/queues", response_model=None)
async def create_queue(request: Request, session: DBSession, principal: PageRoutingWrite) -> Response:
    form = await request.form()
    try:
        data = QueueWrite(
            name=str(form.get("name", "")).strip(), strategy=form.get("strategy") or Strategy.longest_waiting
        )
        queue = await admin.create_queue(session, data, actor=principal)
    except (ValidationError, ParleyError) as exc:
        return await _settings(request, session, principal, error=_error_text(exc), status_code=422)
    return RedirectResponse(f"/settings/routing/queues/{queue.id}", status_code=303)


async def _queue_page(
    request: Request,
    session: DBSession,
    principal: Principal,
    queue: RoutingQueue,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    members = await admin.members(session, queue.id)
    own_caps = dict(
        (
            await session.execute(
                select(RoutingAgent.user_id, RoutingAgent.capacity).where(
                    RoutingAgent.user_id.in_([m.user_id for m in members])
                )
            )
        ).all()
    )
    users = list(
        (await session.scalars(select(User).where(User.is_active.is_(True)).order_by(User.name))).all()
    )
    others = list(
        (
            await session.scalars(
                select(RoutingQueue).where(RoutingQueue.id != queue.id).order_by(RoutingQueue.name)
            )
        ).all()
    )
    hours = hours_of(queue.hours)
    return render(
        request,
        "settings/routing_queue.html",
        principal,
        status_code=status_code,
        queue=queue,
        hours=hours,
        days=DAYS,
        day_text={d: ", ".join(f"{a}-{b}" for a, b in hours.days.get(d, [])) for d in DAYS},
        members=members,
        own_caps=own_caps,
        users=[u for u in users if u.id not in {m.user_id for m in members}],
        others=others,
        strategies=list(Strategy),
        error=error,
    )


@router.get("/settings/routing/queues/{queue_id}", response_class=HTMLResponse)
async def queue_page(
    request: Request, session: DBSession, principal: PageRoutingWrite, queue_id: uuid.UUID
) -> HTMLResponse:
    queue = await session.get(RoutingQueue, queue_id)
    if queue is None:
        return await _settings(request, session, principal, error="Queue not found", status_code=404)
    return await _queue_page(request, session, principal, queue)


async def _queue_refused(
    request: Request, session: AsyncSession, principal: Principal, queue_id: uuid.UUID, exc: Exception
) -> Response:
    """The queue's page again with why the change was refused; nothing of the change is kept."""
    await session.rollback()
    queue = await session.get(RoutingQueue, queue_id)
    assert queue is not None  # noqa: S101
    return await _queue_page(request, session, principal, queue, error=_error_text(exc), status_code=422)


@router.post("/settings/routing/queues/{queue_id}", response_model=None)
async def save_queue(
    request: Request, session: DBSession, principal: PageRoutingWrite, queue_id: uuid.UUID
) -> Response:
    queue = await session.get(RoutingQueue, queue_id)
    if queue is None:
        return await _settings(request, session, principal, error="Queue not found", status_code=404)
    form = await request.form()
    try:
        data = _queue_from_form(form)
        await admin.update_queue(session, queue_id, data, actor=principal)
    except (ValidationError, ParleyError, ValueError) as exc:
        return await _queue_refused(request, session, principal, queue_id, exc)
    return RedirectResponse(f"/settings/routing/queues/{queue_id}?saved=1", status_code=303)


@router.post("/settings/routing/queues/{queue_id}/delete", response_model=None)
async def delete_queue(
    request: Request, session: DBSession, principal: PageRoutingWrite, queue_id: uuid.UUID
) -> Response:
    try:
        await admin.delete_queue(session, queue_id, actor=principal)
    except ParleyError as exc:
        return await _settings(request, session, principal, error=_error_text(exc), status_code=409)
    return RedirectResponse("/settings/routing", status_code=303)


@router.post("/settings/routing/queues/{queue_id}/members", response_model=None)
async def save_member(
    request: Request, session: DBSession, principal: PageRoutingWrite, queue_id: uuid.UUID
) -> Response:
    form = await request.form()
    queue = await session.get(RoutingQueue, queue_id)
    if queue is None:
        return await _settings(request, session, principal, error="Queue not found", status_code=404)
    ctx = request.app.state.ctx
    try:
        data = MemberWrite(
            user_id=uuid.UUID(str(form.get("user_id", ""))),
            skill_level=_int(form.get("skill_level")) or 1,
            weight=_int(form.get("weight")) or 1,
        )
        await admin.set_member(session, ctx, queue_id, data, actor=principal)
        if "capacity" in form:
            await admin.set_agent_capacity(
                session,
                ctx,
                data.user_id,
                CapacityWrite(capacity=_int(form.get("capacity"))),
                actor=principal,
            )
    except (ValidationError, ParleyError, ValueError) as exc:
        return await _queue_refused(request, session, principal, queue_id, exc)
    return RedirectResponse(f"/settings/routing/queues/{queue_id}", status_code=303)


@router.post("/settings/routing/queues/{queue_id}/members/{user_id}/remove")
async def remove_member(
    session: DBSession, principal: PageRoutingWrite, queue_id: uuid.UUID, user_id: uuid.UUID
) -> RedirectResponse:
    # Already gone is fine: the page shows the current members either way.
    with contextlib.suppress(ParleyError):
        await admin.remove_member(session, queue_id, user_id, actor=principal)
    return RedirectResponse(f"/settings/routing/queues/{queue_id}", status_code=303)


@router.post("/settings/routing/rules", response_model=None)
async def create_rule(request: Request, session: DBSession, principal: PageRoutingWrite) -> Response:
    form = await request.form()
    try:
        conditions: dict[str, Any] = {"event": form.get("event") or "any"}
        if form.get("account_id"):
            conditions["account_id"] = form.get("account_id")
        if form.get("keywords"):
            conditions["keywords"] = _lines(str(form.get("keywords")))
        if str(form.get("event_key", "")).strip():
            conditions["event_key"] = str(form.get("event_key")).strip()
        if form.get("tags"):
            conditions["tags"] = _lines(str(form.get("tags")))
        if form.get("attributes"):
            conditions["attributes"] = _pairs(str(form.get("attributes")))
        data = RuleWrite.model_validate(
            {
                "name": str(form.get("name", "")).strip(),
                "queue_id": form.get("queue_id"),
                "conditions": conditions,
            }
        )
        await admin.create_rule(session, data, actor=principal)
    except (ValidationError, ParleyError) as exc:
        return await _settings(request, session, principal, error=_error_text(exc), status_code=422)
    return RedirectResponse("/settings/routing#rules", status_code=303)


@router.post("/settings/routing/rules/{rule_id}/move")
async def move_rule(
    request: Request, session: DBSession, principal: PageRoutingWrite, rule_id: uuid.UUID
) -> RedirectResponse:
    form = await request.form()
    ids = [
        r.id
        for r in (await session.scalars(select(EntryRule).order_by(EntryRule.position, EntryRule.name))).all()
    ]
    if rule_id in ids:
        i = ids.index(rule_id)
        j = i - 1 if form.get("direction") == "up" else i + 1
        if 0 <= j < len(ids):
            ids[i], ids[j] = ids[j], ids[i]
            await admin.order_rules(session, ids, actor=principal)
    return RedirectResponse("/settings/routing#rules", status_code=303)


@router.post("/settings/routing/rules/{rule_id}/delete")
async def delete_rule(
    session: DBSession, principal: PageRoutingWrite, rule_id: uuid.UUID
) -> RedirectResponse:
    with contextlib.suppress(ParleyError):
        await admin.delete_rule(session, rule_id, actor=principal)
    return RedirectResponse("/settings/routing#rules", status_code=303)


@router.post("/settings/routing/roles/{role_id}/capacity", response_model=None)
async def role_capacity(
    request: Request, session: DBSession, principal: PageRoutingWrite, role_id: uuid.UUID
) -> Response:
    form = await request.form()
    try:
        data = CapacityWrite(capacity=_int(form.get("capacity")))
        await admin.set_role_capacity(session, request.app.state.ctx, role_id, data, actor=principal)
    except (ValidationError, ParleyError) as exc:
        return await _settings(request, session, principal, error=_error_text(exc), status_code=422)
    return RedirectResponse("/settings/routing#capacity", status_code=303)
