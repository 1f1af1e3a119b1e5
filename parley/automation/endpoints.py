"""Automation over the REST API: rules, unmatched texts, flows (versions, dry runs, runs), menus."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from parley.auth.dependencies import DBSession, authorize
from parley.auth.permissions import Permission
from parley.auth.service import Principal
from parley.automation import knowledge
from parley.automation import menus as menu_service
from parley.automation import rules as rule_service
from parley.automation.flows import service as flow_service
from parley.automation.flows.definition import dump_definition
from parley.automation.schemas import RuleIn, RuleRead, UnmatchedGroup
from parley.channels.runtime import runtime
from parley.contacts.tags import tags_of
from parley.context import Context
from parley.db import session_scope
from parley.exceptions import BadRequest, NotFound
from parley.models import ChannelAccount, Contact, FlowRun, Message

AutomationRead = Annotated[Principal, Depends(authorize(Permission.automation_read))]
AutomationWrite = Annotated[Principal, Depends(authorize(Permission.automation_write))]

router = APIRouter(prefix="/api/v1/automation", tags=["automation"])


def _rule(rule: Any) -> RuleRead:
    return RuleRead.model_validate(rule)


# --- rules -------------------------------------------------------------------------------------


@router.get("/rules", response_model=list[RuleRead])
async def list_rules(
    _: AutomationRead, session: DBSession, account_id: uuid.UUID | None = None
) -> list[RuleRead]:
    return [_rule(r) for r in await rule_service.list_rules(session, account_id)]


@router.post("/rules", response_model=RuleRead, status_code=status.HTTP_201_CREATED)
async def create_rule(_: AutomationWrite, session: DBSession, data: RuleIn) -> RuleRead:
    return _rule(await rule_service.create_rule(session, data))


@router.get("/rules/{rule_id}", response_model=RuleRead)
async def read_rule(_: AutomationRead, session: DBSession, rule_id: uuid.UUID) -> RuleRead:
    return _rule(await rule_service.get_rule(session, rule_id))


@router.put("/rules/{rule_id}", response_model=RuleRead)
async def update_rule(_: AutomationWrite, session: DBSession, rule_id: uuid.UUID, data: RuleIn) -> RuleRead:
    return _rule(await rule_service.update_rule(session, rule_id, data))


@router.delete("/rules/{rule_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_rule(_: AutomationWrite, session: DBSession, rule_id: uuid.UUID) -> Response:
    await rule_service.delete_rule(session, rule_id)
    return Response(status_code=204)


class MatchResult(BaseModel):
    matched: bool
    rule_id: uuid.UUID | None = None
    rule_name: str | None = None
    keyword: str | None = None
    kind: str | None = None
    edits: int | None = None


@router.get("/match", response_model=MatchResult)
async def try_match(_: AutomationRead, session: DBSession, account_id: uuid.UUID, text: str) -> MatchResult:
    """Which rule would answer this text now (for the console's "try it" box)."""
    match = await rule_service.match_text(session, account_id, text)
    if match is None:
        return MatchResult(matched=False)
    return MatchResult(
        matched=True,
        rule_id=match.target.id,
        rule_name=match.target.name,
        keyword=match.keyword,
        kind=match.kind.value,
        edits=match.edits,
    )


@router.get("/unmatched", response_model=list[UnmatchedGroup])
async def unmatched(_: AutomationRead, session: DBSession, account_id: uuid.UUID) -> list[UnmatchedGroup]:
    """Texts no rule answered, grouped by similarity, the most frequent first."""
    return await rule_service.unmatched_groups(session, account_id)


# --- flows -------------------------------------------------------------------------------------


class FlowIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    account_id: uuid.UUID | None = None
    # Either the structured definition, or its JSON/YAML text (what the console editor sends).
    definition: dict[str, Any] | None = None
    source: str | None = Field(default=None, max_length=500_000)

    def parsed(self) -> Any:
        if (self.definition is None) == (self.source is None):
            raise BadRequest("Give the flow as 'definition' (an object) or 'source' (JSON or YAML text)")
        return flow_service.parse_or_400(
            self.definition if self.definition is not None else self.source or ""
        )


class VersionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    definition: dict[str, Any] | None = None
    source: str | None = Field(default=None, max_length=500_000)


class FlowRead(BaseModel):
    id: uuid.UUID
    name: str
    account_id: uuid.UUID | None
    current_version: int
    is_active: bool
    definition: dict[str, Any]
    updated_at: datetime


class VersionRead(BaseModel):
    version: int
    created_at: datetime
    definition: dict[str, Any]


async def _flow_read(session: Any, flow: Any) -> FlowRead:
    version = await flow_service.current_version(session, flow)
    return FlowRead(
        id=flow.id,
        name=flow.name,
        account_id=flow.account_id,
        current_version=flow.current_version,
        is_active=flow.is_active,
        definition=version.definition,
        updated_at=flow.updated_at,
    )


@router.get("/flows", response_model=list[FlowRead])
async def list_flows(_: AutomationRead, session: DBSession) -> list[FlowRead]:
    return [await _flow_read(session, f) for f in await flow_service.list_flows(session)]


@router.post("/flows", response_model=FlowRead, status_code=status.HTTP_201_CREATED)
async def create_flow(principal: AutomationWrite, session: DBSession, data: FlowIn) -> FlowRead:
    definition = data.parsed()
    flow = await flow_service.create_flow(
        session, name=data.name, account_id=data.account_id, definition=definition, actor_id=principal.user.id
    )
    return await _flow_read(session, flow)


@router.post("/flows/validate")
async def validate_flow(_: AutomationRead, data: VersionIn) -> dict[str, Any]:
    """Checks a definition without storing it (the editor's live validation)."""
    from parley.automation.flows.definition import DefinitionError, parse_definition

    source: Any = data.definition if data.definition is not None else (data.source or "")
    try:
        parsed = parse_definition(source)
    except DefinitionError as exc:
        return {"valid": False, "errors": exc.errors}
    return {"valid": True, "errors": [], "nodes": len(parsed.nodes)}


@router.get("/flows/{flow_id}", response_model=FlowRead)
async def read_flow(_: AutomationRead, session: DBSession, flow_id: uuid.UUID) -> FlowRead:
    return await _flow_read(session, await flow_service.get_flow(session, flow_id))


@router.post("/flows/{flow_id}/versions", response_model=FlowRead, status_code=status.HTTP_201_CREATED)
async def new_version(
    principal: AutomationWrite, session: DBSession, flow_id: uuid.UUID, data: VersionIn
) -> FlowRead:
    """Publishes a new version: new runs use it at once; runs in progress finish on theirs."""
    flow = await flow_service.get_flow(session, flow_id)
    definition = FlowIn(name=flow.name, definition=data.definition, source=data.source).parsed()
    await flow_service.publish_version(session, flow, definition, actor_id=principal.user.id)
    return await _flow_read(session, flow)


@router.get("/flows/{flow_id}/versions", response_model=list[VersionRead])
async def versions(_: AutomationRead, session: DBSession, flow_id: uuid.UUID) -> list[VersionRead]:
    await flow_service.get_flow(session, flow_id)
    return [
        VersionRead(version=v.version, created_at=v.created_at, definition=v.definition)
        for v in await flow_service.list_versions(session, flow_id)
    ]


@router.get("/flows/{flow_id}/export")
async def export_flow(
    _: AutomationRead, session: DBSession, flow_id: uuid.UUID, format: Literal["json", "yaml"] = "yaml"
) -> Response:
    flow = await flow_service.get_flow(session, flow_id)
    version = await flow_service.current_version(session, flow)
    body = dump_definition(version.definition, format)
    media = "application/json" if format == "json" else "application/yaml"
    return Response(
        body,
        media_type=f"{media}; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="flow-{flow.id}-v{version.version}.{format}"'},
    )


class DryRunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    definition: dict[str, Any] | None = None  # try an unsaved edit; default: the current version
    source: str | None = None
    contact_id: uuid.UUID | None = None  # a sample contact whose data the branches see
    contact: dict[str, Any] | None = None
    variables: dict[str, Any] = Field(default_factory=dict)
    replies: list[str] = Field(default_factory=list, max_length=50)
    http_responses: dict[str, Any] = Field(default_factory=dict)


@router.post("/flows/{flow_id}/dry-run")
async def dry_run(
    _: AutomationRead, session: DBSession, flow_id: uuid.UUID, data: DryRunIn
) -> dict[str, Any]:
    """Runs the flow in memory against sample data and shows each step; nothing is sent or written."""
    flow = await flow_service.get_flow(session, flow_id)
    if data.definition is not None or data.source is not None:
        definition = FlowIn(name=flow.name, definition=data.definition, source=data.source).parsed()
    else:
        definition = flow_service.parse_or_400((await flow_service.current_version(session, flow)).definition)
    contact = dict(data.contact or {})
    if data.contact_id is not None:
        row = await session.get(Contact, data.contact_id)
        if row is None:
            raise NotFound("No such contact")
        contact = {
            "display_name": row.display_name,
            "phone": row.phone,
            "city": row.city,
            "language": row.language,
            "attributes": dict(row.attributes or {}),
            "tags": [tag.name for tag, _link in await tags_of(session, row.id)],
            **contact,
        }
    return await flow_service.dry_run(
        definition,
        contact=contact,
        variables=data.variables,
        replies=data.replies,
        http_responses=data.http_responses,
    )


class RunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    contact_id: uuid.UUID
    account_id: uuid.UUID
    variables: dict[str, Any] = Field(default_factory=dict)


class RunRead(BaseModel):
    id: uuid.UUID
    flow_id: uuid.UUID
    version: int
    status: str
    node_id: str | None
    variables: dict[str, Any]
    contact_id: uuid.UUID | None
    conversation_id: uuid.UUID | None
    wake_at: datetime | None
    error: str | None
    created_at: datetime
    finished_at: datetime | None
    steps: list[dict[str, Any]] = Field(default_factory=list)


def _run_read(run: FlowRun, steps: Any = ()) -> RunRead:
    return RunRead(
        id=run.id,
        flow_id=run.flow_id,
        version=run.version,
        status=run.status,
        node_id=run.node_id,
        variables=run.variables,
        contact_id=run.contact_id,
        conversation_id=run.conversation_id,
        wake_at=run.wake_at,
        error=run.error,
        created_at=run.created_at,
        finished_at=run.finished_at,
        steps=[
            {"seq": s.seq, "node_id": s.node_id, "type": s.type, "detail": s.detail, "at": s.created_at}
            for s in steps
        ],
    )


@router.post("/flows/{flow_id}/runs", response_model=RunRead, status_code=status.HTTP_201_CREATED)
async def start_run(
    request: Request, _: AutomationWrite, session: DBSession, flow_id: uuid.UUID, data: RunIn
) -> RunRead:
    """The inbound API trigger: the business's own system starts a flow for a contact."""
    ctx: Context = request.app.state.ctx
    account = await session.get(ChannelAccount, data.account_id)
    contact = await session.get(Contact, data.contact_id)
    if account is None or contact is None:
        raise NotFound("No such account or contact")
    run = await flow_service.start_run(
        session,
        ctx,
        flow_id=flow_id,
        account=account,
        contact=contact,
        conversation_id=None,
        peer_id=None,
        trigger={"type": "api"},
        variables=data.variables,
    )
    if run is None:
        raise BadRequest("The flow is inactive or the contact is already in it")
    _run, steps = await flow_service.run_steps(session, run.id)
    return _run_read(run, steps)


@router.get("/flows/{flow_id}/runs", response_model=list[RunRead])
async def list_runs(_: AutomationRead, session: DBSession, flow_id: uuid.UUID) -> list[RunRead]:
    return [_run_read(r) for r in await flow_service.list_runs(session, flow_id)]


@router.get("/runs/{run_id}", response_model=RunRead)
async def read_run(_: AutomationRead, session: DBSession, run_id: uuid.UUID) -> RunRead:
    """A run step by step: what each node did, with the variables it left."""
    run, steps = await flow_service.run_steps(session, run_id)
    return _run_read(run, steps)


# --- menus -------------------------------------------------------------------------------------


class MenuRead(BaseModel):
    account_id: uuid.UUID
    buttons: list[dict[str, Any]]
    published: list[dict[str, Any]] | None
    published_at: datetime | None


@router.get("/menus/{account_id}", response_model=MenuRead)
async def read_menu(_: AutomationRead, session: DBSession, account_id: uuid.UUID) -> MenuRead:
    menu = await menu_service.get_menu(session, account_id)
    if menu is None:
        return MenuRead(account_id=account_id, buttons=[], published=None, published_at=None)
    return MenuRead(
        account_id=account_id, buttons=menu.buttons, published=menu.published, published_at=menu.published_at
    )


@router.put("/menus/{account_id}", response_model=MenuRead)
async def save_menu(
    _: AutomationWrite, session: DBSession, account_id: uuid.UUID, data: menu_service.MenuIn
) -> MenuRead:
    menu = await menu_service.save_menu(session, account_id, data)
    return MenuRead(
        account_id=account_id, buttons=menu.buttons, published=menu.published, published_at=menu.published_at
    )


@router.post("/menus/{account_id}/publish", response_model=MenuRead)
async def publish_menu(request: Request, _: AutomationWrite, account_id: uuid.UUID) -> MenuRead:
    """Publishes the saved menu to the platform; the platform call happens outside the write transaction."""
    ctx: Context = request.app.state.ctx
    async with session_scope(ctx.sessionmaker, write=False) as session:
        account = await session.get(ChannelAccount, account_id)
        menu = await menu_service.get_menu(session, account_id)
        if account is None:
            raise NotFound("No such channel account")
        if menu is None or not menu.buttons:
            raise BadRequest("Save a menu before publishing it")
        buttons = list(menu.buttons)
    adapter = runtime(ctx).adapter(account)
    await menu_service.push_menu(adapter, buttons)
    async with session_scope(ctx.sessionmaker) as session:
        menu = await menu_service.mark_published(session, account_id, buttons)
        return MenuRead(
            account_id=account_id,
            buttons=menu.buttons,
            published=menu.published,
            published_at=menu.published_at,
        )


# --- knowledge base ------------------------------------------------------------------------------

ConversationsRead = Annotated[Principal, Depends(authorize(Permission.conversations_read))]


class CategoryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    parent_id: uuid.UUID | None
    position: int


class ArticleRead(knowledge.ArticleIn):
    model_config = ConfigDict(from_attributes=True, extra="ignore")

    id: uuid.UUID
    updated_at: datetime


class HitRead(BaseModel):
    article_id: uuid.UUID
    title: str
    answer: str
    language: str
    confidence: float


def _hits(hits: list[knowledge.Hit]) -> list[HitRead]:
    return [
        HitRead(
            article_id=h.article_id,
            title=h.title,
            answer=h.answer,
            language=h.language,
            confidence=round(h.confidence, 3),
        )
        for h in hits
    ]


@router.get("/kb/categories", response_model=list[CategoryRead])
async def kb_categories(_: AutomationRead, session: DBSession) -> list[CategoryRead]:
    return [CategoryRead.model_validate(c) for c in await knowledge.list_categories(session)]


@router.post("/kb/categories", response_model=CategoryRead, status_code=status.HTTP_201_CREATED)
async def kb_create_category(
    _: AutomationWrite, session: DBSession, data: knowledge.CategoryIn
) -> CategoryRead:
    return CategoryRead.model_validate(await knowledge.create_category(session, data))


@router.get("/kb/articles", response_model=list[ArticleRead])
async def kb_articles(
    _: AutomationRead, session: DBSession, language: str | None = None, category_id: uuid.UUID | None = None
) -> list[ArticleRead]:
    rows = await knowledge.list_articles(session, language=language, category_id=category_id)
    return [ArticleRead.model_validate(a) for a in rows]


@router.post("/kb/articles", response_model=ArticleRead, status_code=status.HTTP_201_CREATED)
async def kb_create_article(_: AutomationWrite, session: DBSession, data: knowledge.ArticleIn) -> ArticleRead:
    return ArticleRead.model_validate(await knowledge.create_article(session, data))


@router.put("/kb/articles/{article_id}", response_model=ArticleRead)
async def kb_update_article(
    _: AutomationWrite, session: DBSession, article_id: uuid.UUID, data: knowledge.ArticleIn
) -> ArticleRead:
    return ArticleRead.model_validate(await knowledge.update_article(session, article_id, data))


@router.delete("/kb/articles/{article_id}", status_code=status.HTTP_204_NO_CONTENT)
async def kb_delete_article(_: AutomationWrite, session: DBSession, article_id: uuid.UUID) -> Response:
    await knowledge.delete_article(session, article_id)
    return Response(status_code=204)


@router.get("/kb/search", response_model=list[HitRead])
async def kb_search(
    _: ConversationsRead, session: DBSession, q: str, language: str | None = None, limit: int = 5
) -> list[HitRead]:
    return _hits(await knowledge.search(session, q, language=language, limit=max(1, min(limit, 20))))


@router.get("/suggestions", response_model=list[HitRead])
async def suggestions(_: ConversationsRead, session: DBSession, conversation_id: uuid.UUID) -> list[HitRead]:
    """Articles that answer the customer's latest message, for the agent to send with one click."""
    text = await session.scalar(
        select(Message.text)
        .where(
            Message.conversation_id == conversation_id, Message.direction == "in", Message.text.is_not(None)
        )
        .order_by(Message.id.desc())
        .limit(1)
    )
    if not text:
        return []
    return _hits(await knowledge.search(session, text, limit=3))


class BotSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool
    min_confidence: float = Field(ge=0.1, le=1.0)


@router.get("/kb/bot", response_model=BotSettings)
async def kb_bot(_: AutomationRead, session: DBSession) -> BotSettings:
    return BotSettings.model_validate(await knowledge.bot_settings(session))


@router.put("/kb/bot", response_model=BotSettings)
async def kb_set_bot(_: AutomationWrite, session: DBSession, data: BotSettings) -> BotSettings:
    return BotSettings.model_validate(
        await knowledge.set_bot_settings(session, enabled=data.enabled, min_confidence=data.min_confidence)
    )
