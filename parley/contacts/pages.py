"""Console pages: the contact list, the 360° contact page, segments, and Settings → Contacts."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import select

from parley.auth.dependencies import DBSession
from parley.auth.permissions import Permission
from parley.auth.service import Principal, audit
from parley.contacts import attributes as attribute_service
from parley.contacts import lifecycle
from parley.contacts import merge as merge_service
from parley.contacts import service as contact_service
from parley.contacts import tags as tag_service
from parley.contacts.attributes import InvalidValues
from parley.contacts.fields import GENDERS
from parley.contacts.schemas import LifecycleRules
from parley.contacts.service import ListQuery
from parley.exceptions import ParleyError
from parley.models import AttributeType, Segment
from parley.web.auth import PageContacts, page
from parley.web.rendering import render

router = APIRouter(include_in_schema=False)
PageContactsWrite = Annotated[Principal, Depends(page(Permission.contacts_write))]
PageContactSettings = Annotated[Principal, Depends(page(Permission.roles_write))]
PAGE_SIZE = 50
STAGES = ("new", "active", "dormant", "lost")


def _uuid(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None


@router.get("/contacts", response_class=HTMLResponse)
async def contact_list(request: Request, session: DBSession, principal: PageContacts) -> HTMLResponse:
    params = request.query_params
    query = ListQuery(
        q=params.get("q", "")[:200],
        tag_id=_uuid(params.get("tag_id")),
        segment_id=_uuid(params.get("segment_id")),
        stage=params.get("stage", "") if params.get("stage", "") in STAGES else "",
        owner_id=_uuid(params.get("owner_id")),
    )
    try:
        page_no = max(1, int(params.get("page", "1")))
    except ValueError:
        page_no = 1
    contacts, total = await contact_service.search(
        session, query, limit=PAGE_SIZE, offset=(page_no - 1) * PAGE_SIZE
    )
    tags, groups = await tag_service.all_tags(session)
    contact_tags = await tag_service.tags_for_contacts(session, [c.id for c in contacts])
    kept = {k: v for k, v in params.items() if k != "page" and v}
    users = await contact_service.agents(session)
    return render(
        request,
        "contacts/list.html",
        principal,
        contacts=contacts,
        total=total,
        page_no=page_no,
        pages=max(1, (total + PAGE_SIZE - 1) // PAGE_SIZE),
        query=query,
        tags=tags,
        color=lambda tag: tag_service.tag_color(tag, groups),
        contact_tags=contact_tags,
        segment_list=list((await session.scalars(select(Segment).order_by(Segment.name))).all()),
        users=users,
        user_names={u.id: u.name for u in users},
        stages=STAGES,
        kept_query=urlencode(kept),
        page_query=lambda n: urlencode({**kept, "page": n}),
        can_write=principal.can(Permission.contacts_write.value),
    )


async def _contact_page(
    request: Request,
    session: DBSession,
    principal: Principal,
    contact_id: uuid.UUID,
    *,
    errors: dict[str, str] | None = None,
    submitted: dict[str, Any] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    contact = await contact_service.get_contact(session, contact_id)
    if contact.merged_into_id is not None:
        live = await contact_service.get_contact(session, contact.merged_into_id)
        merged_into: Any = live
    else:
        merged_into = None
    tags, groups = await tag_service.all_tags(session)
    return render(
        request,
        "contacts/detail.html",
        principal,
        status_code=status_code,
        contact=contact,
        merged_into=merged_into,
        tags=tags,
        contact_tags=await tag_service.tags_of(session, contact.id),
        color=lambda tag: tag_service.tag_color(tag, groups),
        identities=await contact_service.identities_of(session, contact.id),
        definitions=await attribute_service.definitions(session),
        timeline=await contact_service.timeline(session, contact.id, limit=100),
        locations=await contact_service.location_track(session, contact.id, limit=50),
        conversations=await contact_service.conversations_of(session, contact.id),
        users=await contact_service.agents(session),
        merges=await merge_service.merges_of(session, contact.id),
        genders=GENDERS,
        errors=errors or {},
        submitted=submitted or {},
        can_write=principal.can(Permission.contacts_write.value),
    )


@router.get("/contacts/segments", response_class=HTMLResponse)
async def segments_page(request: Request, session: DBSession, principal: PageContacts) -> HTMLResponse:
    tags, _groups = await tag_service.all_tags(session)
    rows = list((await session.scalars(select(Segment).order_by(Segment.name))).all())
    editing = None
    if (segment_id := _uuid(request.query_params.get("id"))) is not None:
        editing = await session.get(Segment, segment_id)
    from parley.models import ChannelAccount

    accounts = list((await session.scalars(select(ChannelAccount).order_by(ChannelAccount.name))).all())
    return render(
        request,
        "contacts/segments.html",
        principal,
        segment_list=rows,
        editing=editing,
        editor_data=json.dumps(
            {
                "tags": [{"id": str(t.id), "name": t.name} for t in tags],
                "fields": [
                    {"key": d.key, "label": d.label, "type": d.type, "options": d.options}
                    for d in await attribute_service.definitions(session)
                ],
                "accounts": [{"id": str(a.id), "name": a.name, "type": a.type} for a in accounts],
                "segment": (
                    {"id": str(editing.id), "name": editing.name, "definition": editing.definition}
                    if editing
                    else None
                ),
            },
            ensure_ascii=False,
        ),
        can_write=principal.can(Permission.contacts_write.value),
    )


@router.get("/contacts/{contact_id:uuid}", response_class=HTMLResponse)
async def contact_page(
    request: Request, session: DBSession, principal: PageContacts, contact_id: uuid.UUID
) -> HTMLResponse:
    return await _contact_page(request, session, principal, contact_id)


@router.post("/contacts/{contact_id:uuid}/profile", response_class=HTMLResponse, response_model=None)
async def save_profile(
    request: Request, session: DBSession, principal: PageContactsWrite, contact_id: uuid.UUID
) -> HTMLResponse | RedirectResponse:
    form = await request.form()
    contact = await contact_service.get_contact(session, contact_id)
    defs = await attribute_service.definitions(session)
    profile = {
        name: str(form.get(name, ""))
        for name in (
            "display_name",
            "phone",
            "email",
            "gender",
            "language",
            "city",
            "province",
            "country",
            "birthday",
        )
        if name in form
    }
    attributes: dict[str, Any] = {}
    for definition in defs:
        name = f"attr.{definition.key}"
        if definition.type == AttributeType.multi_choice:
            attributes[definition.key] = [str(v) for v in form.getlist(name)]
        elif definition.type == AttributeType.boolean or name in form:
            attributes[definition.key] = str(form.get(name, ""))
    owner_raw = str(form.get("owner_id", "keep"))
    owner: uuid.UUID | str | None = "keep"
    if owner_raw == "":
        owner = None
    elif owner_raw != "keep":
        owner = _uuid(owner_raw) or uuid.UUID(int=0)
    try:
        changes = await attribute_service.update_contact(
            session, contact, profile=profile, attributes=attributes, owner_id=owner
        )
    except InvalidValues as exc:
        submitted = {**profile, **{f"attr.{k}": v for k, v in attributes.items()}}
        return await _contact_page(
            request, session, principal, contact_id, errors=exc.errors, submitted=submitted, status_code=422
        )
    if changes:
        await audit.record(
            session,
            actor=principal,
            action="contact.update",
            target_type="contact",
            target_id=contact.id,
            changes=changes,
        )
    return RedirectResponse(f"/contacts/{contact_id}?saved=1", status_code=303)


@router.post("/contacts/{contact_id:uuid}/tags", response_class=HTMLResponse, response_model=None)
async def add_tag(
    request: Request, session: DBSession, principal: PageContactsWrite, contact_id: uuid.UUID
) -> HTMLResponse | RedirectResponse:
    form = await request.form()
    contact = await contact_service.get_contact(session, contact_id)
    tag_id = _uuid(str(form.get("tag_id", "")))
    name = str(form.get("name", "")).strip()
    try:
        if tag_id is not None:
            await tag_service.add_tags(session, [contact.id], [tag_id], added_by_id=principal.user.id)
        elif name:
            await tag_service.apply_tags(
                session, [contact.id], [name], "agent", added_by_id=principal.user.id
            )
    except ParleyError as exc:
        return await _contact_page(
            request, session, principal, contact_id, errors={"tags": exc.message}, status_code=exc.status_code
        )
    return RedirectResponse(f"/contacts/{contact_id}", status_code=303)


@router.post("/contacts/{contact_id:uuid}/tags/{tag_id}/remove")
async def remove_tag(
    session: DBSession, principal: PageContactsWrite, contact_id: uuid.UUID, tag_id: uuid.UUID
) -> RedirectResponse:
    await tag_service.remove_tags(session, [contact_id], [tag_id])
    return RedirectResponse(f"/contacts/{contact_id}", status_code=303)


# --- Settings → Contacts -----------------------------------------------------------------------


async def _settings(
    request: Request,
    session: DBSession,
    principal: Principal,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    tags, groups = await tag_service.all_tags(session)
    return render(
        request,
        "settings/contacts.html",
        principal,
        status_code=status_code,
        error=error,
        definitions=await attribute_service.definitions(session),
        types=AttributeType.ALL,
        tags=tags,
        groups=list(groups.values()),
        group_names={g.id: g.name for g in groups.values()},
        counts=await tag_service.tag_counts(session),
        color=lambda tag: tag_service.tag_color(tag, groups),
        rules=await lifecycle.get_rules(session),
    )


@router.get("/settings/contacts", response_class=HTMLResponse)
async def contact_settings(
    request: Request, session: DBSession, principal: PageContactSettings
) -> HTMLResponse:
    return await _settings(request, session, principal)


async def _settings_action(
    request: Request, session: DBSession, principal: Principal, action: Any
) -> HTMLResponse | RedirectResponse:
    try:
        await action()
    except ParleyError as exc:
        await session.rollback()
        return await _settings(request, session, principal, error=exc.message, status_code=exc.status_code)
    return RedirectResponse("/settings/contacts?saved=1", status_code=303)


@router.post("/settings/contacts/fields", response_class=HTMLResponse, response_model=None)
async def add_field(
    request: Request, session: DBSession, principal: PageContactSettings
) -> HTMLResponse | RedirectResponse:
    form = await request.form()

    async def action() -> None:
        definition = await attribute_service.create_definition(
            session,
            key=str(form.get("key", "")),
            label=str(form.get("label", "")),
            type=str(form.get("type", "")),
            options=str(form.get("options", "")).replace("，", ",").split(","),
            required=form.get("required") == "on",
        )
        await audit.record(
            session,
            actor=principal,
            action="contact_field.create",
            target_type="attribute_definition",
            target_id=definition.id,
            changes={"key": definition.key, "type": definition.type},
        )

    return await _settings_action(request, session, principal, action)


@router.post("/settings/contacts/fields/{field_id}/delete", response_class=HTMLResponse, response_model=None)
async def remove_field(
    request: Request, session: DBSession, principal: PageContactSettings, field_id: uuid.UUID
) -> HTMLResponse | RedirectResponse:
    return await _settings_action(
        request, session, principal, lambda: attribute_service.delete_definition(session, field_id)
    )


@router.post("/settings/contacts/groups", response_class=HTMLResponse, response_model=None)
async def add_group(
    request: Request, session: DBSession, principal: PageContactSettings
) -> HTMLResponse | RedirectResponse:
    form = await request.form()
    return await _settings_action(
        request,
        session,
        principal,
        lambda: tag_service.create_group(
            session, name=str(form.get("name", "")), color=str(form.get("color", "#64748b"))
        ),
    )


@router.post("/settings/contacts/tags", response_class=HTMLResponse, response_model=None)
async def add_settings_tag(
    request: Request, session: DBSession, principal: PageContactSettings
) -> HTMLResponse | RedirectResponse:
    form = await request.form()
    group_id = _uuid(str(form.get("group_id", "")))
    color = str(form.get("color", "")) if form.get("own_color") == "on" else ""
    return await _settings_action(
        request,
        session,
        principal,
        lambda: tag_service.create_tag(
            session, name=str(form.get("name", "")), group_id=group_id, color=color
        ),
    )


@router.post("/settings/contacts/tags/{tag_id}/delete", response_class=HTMLResponse, response_model=None)
async def remove_settings_tag(
    request: Request, session: DBSession, principal: PageContactSettings, tag_id: uuid.UUID
) -> HTMLResponse | RedirectResponse:
    return await _settings_action(
        request, session, principal, lambda: tag_service.delete_tag(session, tag_id)
    )


@router.post("/settings/contacts/groups/{group_id}/delete", response_class=HTMLResponse, response_model=None)
async def remove_group(
    request: Request, session: DBSession, principal: PageContactSettings, group_id: uuid.UUID
) -> HTMLResponse | RedirectResponse:
    return await _settings_action(
        request, session, principal, lambda: tag_service.delete_group(session, group_id)
    )


@router.post("/settings/contacts/lifecycle", response_class=HTMLResponse, response_model=None)
async def save_rules(
    request: Request, session: DBSession, principal: PageContactSettings
) -> HTMLResponse | RedirectResponse:
    form = await request.form()
    try:
        lost_after = str(form.get("lost_after_days", "")).strip()
        rules = LifecycleRules(
            dormant_after_days=int(str(form.get("dormant_after_days", "60"))),
            lost_on_unfollow=form.get("lost_on_unfollow") == "on",
            lost_after_days=int(lost_after) if lost_after else None,
        )
    except ValueError:
        return await _settings(
            request, session, principal, error="Days must be whole numbers from 1 to 3650", status_code=422
        )
    await lifecycle.set_rules(session, rules)
    await audit.record(
        session,
        actor=principal,
        action="contacts.lifecycle_rules",
        target_type="setting",
        target_id=None,
        changes=rules.model_dump(),
    )
    return RedirectResponse("/settings/contacts?saved=1", status_code=303)
