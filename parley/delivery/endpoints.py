"""Operations: the REST API under ``/api/v1/operations`` and the console page ``/operations``.

Viewing needs ``operations.read``; retrying failed and dead-lettered jobs and
changing an account's limits need ``operations.write``. Every retry is audited.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import Field

from parley.auth.dependencies import DBSession, authorize
from parley.auth.permissions import Permission
from parley.auth.service import Principal, audit
from parley.channels.service import channel_account
from parley.context import Context
from parley.delivery import metrics
from parley.delivery import service as delivery
from parley.delivery.engine import shared_flow
from parley.kit.schemas import Schema
from parley.web.auth import page
from parley.web.rendering import render

OperationsRead = Annotated[Principal, Depends(authorize(Permission.operations_read))]
OperationsWrite = Annotated[Principal, Depends(authorize(Permission.operations_write))]
PageOperationsRead = Annotated[Principal, Depends(page(Permission.operations_read))]
PageOperationsWrite = Annotated[Principal, Depends(page(Permission.operations_write))]

router = APIRouter(prefix="/api/v1/operations", tags=["operations"])
pages = APIRouter(include_in_schema=False)


class RetryRequest(Schema):
    job_ids: list[int] | None = Field(
        default=None, description="Jobs to retry; omit to retry every failed and dead-lettered job"
    )
    account_id: uuid.UUID | None = Field(default=None, description="Only this account's jobs")


class RetryResult(Schema):
    retried: int


class LimitsUpdate(Schema):
    rate_per_s: float | None = Field(
        default=None, ge=0, description="None: the adapter's default; 0: unlimited"
    )
    burst: float | None = Field(default=None, ge=1)
    daily_quotas: dict[str, int] = Field(default_factory=dict, description="API name → calls a day")


class LimitsRead(Schema):
    account_id: uuid.UUID
    rate_per_s: float
    burst: float
    daily_quotas: dict[str, int]


def _ctx(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


async def _summary(request: Request, session: DBSession) -> delivery.Summary:
    figures = await delivery.summary(session, flow=shared_flow(_ctx(request)))
    metrics.publish(figures)  # this process's /metrics shows what the page shows
    return figures


async def _retry(session: DBSession, principal: Principal, data: RetryRequest) -> int:
    count = await delivery.retry_jobs(session, job_ids=data.job_ids, account_id=data.account_id)
    await audit.record(
        session,
        actor=principal,
        action="delivery.retry",
        target_type="channel_account" if data.account_id else "outbox",
        target_id=data.account_id,
        changes={"job_ids": data.job_ids if data.job_ids is not None else "all", "retried": count},
    )
    return count


@router.get("/delivery")
async def get_delivery(request: Request, session: DBSession, _: OperationsRead) -> dict[str, Any]:
    """Queue depth, send rate, quota use, failures by reason, oldest waiting job and dead letters."""
    figures = await _summary(request, session)
    return {
        "depth": figures.depth,
        "depth_by_priority": figures.depth_by_priority,
        "send_rate_per_s": figures.send_rate_per_s,
        "sent_last_minute": figures.sent_last_minute,
        "quotas": figures.quotas,
        "failures": figures.failures,
        "oldest_waiting": figures.oldest_waiting,
        "dead_letters": figures.dead_letters,
    }


@router.post("/delivery/retry")
async def retry_delivery(session: DBSession, principal: OperationsWrite, data: RetryRequest) -> RetryResult:
    """Puts failed and dead-lettered jobs back in the queue, due now, with their attempts reset."""
    return RetryResult(retried=await _retry(session, principal, data))


@router.get("/accounts/{account_id}/limits")
async def get_account_limits(session: DBSession, _: OperationsRead, account_id: uuid.UUID) -> LimitsRead:
    account = await channel_account.get(session, account_id)
    limits = await delivery.get_limits(session, account)
    return LimitsRead(
        account_id=account.id,
        rate_per_s=limits.rate.per_s,
        burst=limits.rate.burst,
        daily_quotas=limits.daily_quotas,
    )


@router.put("/accounts/{account_id}/limits")
async def put_account_limits(
    session: DBSession, principal: OperationsWrite, account_id: uuid.UUID, data: LimitsUpdate
) -> LimitsRead:
    """Overrides an account's send rate, burst and daily quotas (workers pick it up within seconds)."""
    account = await channel_account.get(session, account_id)
    await delivery.set_limits(
        session,
        account_id=account.id,
        rate_per_s=data.rate_per_s,
        burst=data.burst,
        daily_quotas=data.daily_quotas,
    )
    await audit.record(
        session,
        actor=principal,
        action="delivery.limits",
        target_type="channel_account",
        target_id=account.id,
        changes=data.model_dump(),
    )
    return await get_account_limits(session, principal, account_id)


# --- console page -----------------------------------------------------------------------------


@pages.get("/operations", response_class=HTMLResponse)
async def operations_page(request: Request, session: DBSession, principal: PageOperationsRead) -> Response:
    figures = await _summary(request, session)
    return render(
        request,
        "operations/index.html",
        principal,
        figures=figures,
        can_write=principal.can(Permission.operations_write.value),
        retried=request.query_params.get("retried"),
    )


@pages.post("/operations/retry")
async def operations_retry(request: Request, session: DBSession, principal: PageOperationsWrite) -> Response:
    form = await request.form()
    if form.get("all") == "1":
        job_ids = None
    else:
        job_ids = [int(str(v)) for v in form.getlist("job_id") if str(v).isdigit()]
    count = await _retry(session, principal, RetryRequest(job_ids=job_ids))
    return RedirectResponse(f"/operations?retried={count}", status_code=303)
