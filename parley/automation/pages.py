"""Console pages for automation: rules and unmatched texts, flows (editor, dry run, runs), menus."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select

from parley.auth.dependencies import DBSession
from parley.auth.permissions import Permission
from parley.auth.service import Principal
from parley.automation import menus as menu_service
from parley.automation import rules as rule_service
from parley.automation.flows import service as flow_service
from parley.automation.flows.definition import dump_definition
from parley.models import ChannelAccount
from parley.web.auth import page
from parley.web.rendering import render

PageRead = Annotated[Principal, Depends(page(Permission.automation_read))]

pages = APIRouter(include_in_schema=False)


async def _accounts(session: DBSession) -> list[ChannelAccount]:
    return list((await session.scalars(select(ChannelAccount).order_by(ChannelAccount.name))).all())


def _can_write(principal: Principal) -> bool:
    return principal.can(Permission.automation_write.value)


@pages.get("/automation", response_class=HTMLResponse)
async def rules_page(
    request: Request, session: DBSession, principal: PageRead, account_id: uuid.UUID | None = None
) -> Response:
    accounts = await _accounts(session)
    selected = next((a for a in accounts if a.id == account_id), accounts[0] if accounts else None)
    rules = list(await rule_service.list_rules(session, selected.id)) if selected else []
    groups = await rule_service.unmatched_groups(session, selected.id) if selected else []
    flows = list(await flow_service.list_flows(session))
    return render(
        request,
        "automation/rules.html",
        principal,
        tab="rules",
        accounts=accounts,
        selected=selected,
        rules=rules,
        groups=groups[:30],
        flows=flows,
        can_write=_can_write(principal),
    )


@pages.get("/automation/flows", response_class=HTMLResponse)
async def flows_page(request: Request, session: DBSession, principal: PageRead) -> Response:
    return render(
        request,
        "automation/flows.html",
        principal,
        tab="flows",
        flows=list(await flow_service.list_flows(session)),
        accounts=await _accounts(session),
        can_write=_can_write(principal),
    )


@pages.get("/automation/flows/{flow_id}", response_class=HTMLResponse)
async def flow_editor(
    request: Request, session: DBSession, principal: PageRead, flow_id: uuid.UUID
) -> Response:
    flow = await flow_service.get_flow(session, flow_id)
    version = await flow_service.current_version(session, flow)
    runs = list(await flow_service.list_runs(session, flow_id, limit=20))
    return render(
        request,
        "automation/flow.html",
        principal,
        tab="flows",
        flow=flow,
        source=dump_definition(version.definition, "yaml"),
        runs=runs,
        can_write=_can_write(principal),
    )


@pages.get("/automation/menus", response_class=HTMLResponse)
async def menus_page(
    request: Request, session: DBSession, principal: PageRead, account_id: uuid.UUID | None = None
) -> Response:
    accounts = [a for a in await _accounts(session) if a.type == "wechat"]
    selected = next((a for a in accounts if a.id == account_id), accounts[0] if accounts else None)
    menu = await menu_service.get_menu(session, selected.id) if selected else None
    import json

    return render(
        request,
        "automation/menus.html",
        principal,
        tab="menus",
        accounts=accounts,
        selected=selected,
        menu=menu,
        menu_json=json.dumps({"buttons": menu.buttons if menu else []}, ensure_ascii=False, indent=2),
        flows=list(await flow_service.list_flows(session)),
        can_write=_can_write(principal),
    )


@pages.get("/automation/kb", response_class=HTMLResponse)
async def kb_page(
    request: Request, session: DBSession, principal: PageRead, q: str | None = None
) -> Response:
    from parley.automation import knowledge

    categories = list(await knowledge.list_categories(session))
    names = {c.id: c.name for c in categories}
    hits = await knowledge.search(session, q, limit=10) if q else []
    return render(
        request,
        "automation/kb.html",
        principal,
        tab="kb",
        categories=categories,
        category_names=names,
        articles=list(await knowledge.list_articles(session)),
        bot=await knowledge.bot_settings(session),
        q=q or "",
        hits=hits,
        can_write=_can_write(principal),
    )
