"""REST API for contacts, tags, contact fields, segments and lifecycle rules."""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, status
from fastapi.responses import Response, StreamingResponse
from sqlalchemy import select, update

from parley.auth.dependencies import DBSession, authorize
from parley.auth.permissions import Permission
from parley.auth.service import Principal, audit
from parley.contacts import attributes as attribute_service
from parley.contacts import export, lifecycle, merge, segments
from parley.contacts import service as contact_service
from parley.contacts import tags as tag_service
from parley.contacts.schemas import (
    AttributeDefinitionRead,
    AttributeDefinitionUpdate,
    AttributeDefinitionWrite,
    BulkOwner,
    BulkResult,
    BulkTags,
    ContactDetail,
    ContactRead,
    ContactTagRead,
    ContactUpdate,
    CountRead,
    CountRequest,
    IdentityRead,
    LifecycleRules,
    LocationRead,
    SegmentRead,
    SegmentUpdate,
    SegmentWrite,
    Selection,
    TagGroupRead,
    TagGroupUpdate,
    TagGroupWrite,
    TagRead,
    TagUpdate,
    TagWrite,
    TimelineItemRead,
)
from parley.contacts.service import ListQuery
from parley.exceptions import NotFound, UnprocessableEntity
from parley.kit.schemas import Page, Schema
from parley.models import Contact, ContactIdentity, IdentityKind, Segment, TagGroup

ContactsRead = Annotated[Principal, Depends(authorize(Permission.contacts_read))]
ContactsWrite = Annotated[Principal, Depends(authorize(Permission.contacts_write))]
# Defining fields, tag groups and lifecycle rules changes the CRM for everyone: administrators.
SettingsWrite = Annotated[Principal, Depends(authorize(Permission.roles_write))]

router = APIRouter(prefix="/api/v1", tags=["contacts"])


# --- tags and groups -------------------------------------------------------------------------


async def _tag_reads(session: DBSession) -> list[TagRead]:
    tags, groups = await tag_service.all_tags(session)
    counts = await tag_service.tag_counts(session)
    return [
        TagRead(
            id=t.id,
            name=t.name,
            group_id=t.group_id,
            color=tag_service.tag_color(t, groups),
            contacts=counts.get(t.id, 0),
        )
        for t in tags
    ]


@router.get("/tag-groups", response_model=list[TagGroupRead])
async def list_tag_groups(_: ContactsRead, session: DBSession) -> list[TagGroup]:
    _tags, groups = await tag_service.all_tags(session)
    return list(groups.values())


@router.post("/tag-groups", response_model=TagGroupRead, status_code=status.HTTP_201_CREATED)
async def create_tag_group(principal: SettingsWrite, session: DBSession, data: TagGroupWrite) -> TagGroup:
    group = await tag_service.create_group(session, name=data.name, color=data.color)
    await audit.record(
        session, actor=principal, action="tag_group.create", target_type="tag_group", target_id=group.id
    )
    return group


@router.patch("/tag-groups/{group_id}", response_model=TagGroupRead)
async def update_tag_group(
    _: SettingsWrite, session: DBSession, group_id: uuid.UUID, data: TagGroupUpdate
) -> TagGroup:
    return await tag_service.update_group(session, group_id, name=data.name, color=data.color)


@router.delete("/tag-groups/{group_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_tag_group(_: SettingsWrite, session: DBSession, group_id: uuid.UUID) -> None:
    await tag_service.delete_group(session, group_id)


@router.get("/tags", response_model=list[TagRead])
async def list_tags(_: ContactsRead, session: DBSession) -> list[TagRead]:
    return await _tag_reads(session)


@router.post("/tags", response_model=TagRead, status_code=status.HTTP_201_CREATED)
async def create_tag(principal: ContactsWrite, session: DBSession, data: TagWrite) -> TagRead:
    tag = await tag_service.create_tag(session, name=data.name, group_id=data.group_id, color=data.color)
    await audit.record(session, actor=principal, action="tag.create", target_type="tag", target_id=tag.id)
    return next(t for t in await _tag_reads(session) if t.id == tag.id)


@router.patch("/tags/{tag_id}", response_model=TagRead)
async def update_tag(_: ContactsWrite, session: DBSession, tag_id: uuid.UUID, data: TagUpdate) -> TagRead:
    group: uuid.UUID | str | None = "keep"
    if data.ungroup:
        group = None
    elif data.group_id is not None:
        group = data.group_id
    await tag_service.update_tag(session, tag_id, name=data.name, group_id=group, color=data.color)
    return next(t for t in await _tag_reads(session) if t.id == tag_id)


@router.delete("/tags/{tag_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_tag(principal: SettingsWrite, session: DBSession, tag_id: uuid.UUID) -> None:
    await tag_service.delete_tag(session, tag_id)
    await audit.record(session, actor=principal, action="tag.delete", target_type="tag", target_id=tag_id)


# --- contact fields (attribute definitions) ----------------------------------------------------


@router.get("/contact-fields", response_model=list[AttributeDefinitionRead])
async def list_fields(_: ContactsRead, session: DBSession) -> Any:
    return await attribute_service.definitions(session)


@router.post("/contact-fields", response_model=AttributeDefinitionRead, status_code=status.HTTP_201_CREATED)
async def create_field(principal: SettingsWrite, session: DBSession, data: AttributeDefinitionWrite) -> Any:
    definition = await attribute_service.create_definition(
        session, key=data.key, label=data.label, type=data.type, options=data.options, required=data.required
    )
    await audit.record(
        session,
        actor=principal,
        action="contact_field.create",
        target_type="attribute_definition",
        target_id=definition.id,
        changes={"key": definition.key, "type": definition.type},
    )
    return definition


@router.patch("/contact-fields/{field_id}", response_model=AttributeDefinitionRead)
async def update_field(
    _: SettingsWrite, session: DBSession, field_id: uuid.UUID, data: AttributeDefinitionUpdate
) -> Any:
    return await attribute_service.update_definition(
        session, field_id, label=data.label, options=data.options, required=data.required
    )


@router.delete("/contact-fields/{field_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_field(_: SettingsWrite, session: DBSession, field_id: uuid.UUID) -> None:
    await attribute_service.delete_definition(session, field_id)


# --- contacts ---------------------------------------------------------------------------------


async def _reads(session: DBSession, contacts: list[Contact]) -> list[ContactRead]:
    _all, groups = await tag_service.all_tags(session)
    tags = await tag_service.tags_for_contacts(session, [c.id for c in contacts])
    out = []
    for contact in contacts:
        read = ContactRead.model_validate(contact)
        read.tags = [
            ContactTagRead(id=t.id, name=t.name, color=tag_service.tag_color(t, groups))
            for t in tags.get(contact.id, [])
        ]
        out.append(read)
    return out


async def _detail(session: DBSession, contact: Contact) -> ContactDetail:
    _all, groups = await tag_service.all_tags(session)
    detail = ContactDetail(**ContactRead.model_validate(contact).model_dump())
    detail.tags = [
        ContactTagRead(id=t.id, name=t.name, color=tag_service.tag_color(t, groups), source=link.source)
        for t, link in await tag_service.tags_of(session, contact.id)
    ]
    detail.identities = [
        IdentityRead(
            id=i.id,
            kind=i.kind,
            scope=i.scope,
            value=i.value,
            account_id=i.account_id,
            account_name=name,
            channel=channel,
            verified=i.verified,
        )
        for i, name, channel in await contact_service.identities_of(session, contact.id)
    ]
    return detail


def _list_query(
    q: str, tag_id: uuid.UUID | None, segment_id: uuid.UUID | None, stage: str, owner_id: uuid.UUID | None
) -> ListQuery:
    return ListQuery(q=q, tag_id=tag_id, segment_id=segment_id, stage=stage, owner_id=owner_id)


@router.get("/contacts", response_model=Page[ContactRead])
async def list_contacts(
    _: ContactsRead,
    session: DBSession,
    q: str = "",
    tag_id: uuid.UUID | None = None,
    segment_id: uuid.UUID | None = None,
    stage: str = Query("", pattern="^(|new|active|dormant|lost)$"),
    owner_id: uuid.UUID | None = None,
    limit: int = Query(50, ge=1, le=200),
    offset: int = Query(0, ge=0),
) -> Page[ContactRead]:
    items, total = await contact_service.search(
        session, _list_query(q, tag_id, segment_id, stage, owner_id), limit=limit, offset=offset
    )
    return Page[ContactRead](items=await _reads(session, items), total=total)


@router.get("/contacts/export")
async def export_contacts(
    principal: ContactsRead,
    session: DBSession,
    format: str = Query("csv", pattern="^(csv|xlsx)$"),
    q: str = "",
    tag_id: uuid.UUID | None = None,
    segment_id: uuid.UUID | None = None,
    stage: str = Query("", pattern="^(|new|active|dormant|lost)$"),
    owner_id: uuid.UUID | None = None,
    ids: str = "",
) -> Response:
    query = _list_query(q, tag_id, segment_id, stage, owner_id)
    if ids:
        try:
            query.ids = [uuid.UUID(part) for part in ids.split(",") if part]
        except ValueError:
            raise UnprocessableEntity("ids must be contact ids separated by commas") from None
    condition = await contact_service.list_condition(session, query)
    await audit.record(
        session,
        actor=principal,
        action="contacts.export",
        target_type="contact",
        target_id=None,
        changes={"format": format, "q": q, "tag_id": str(tag_id or ""), "segment_id": str(segment_id or "")},
    )
    if format == "xlsx":
        return Response(
            await export.xlsx_bytes(session, condition),
            media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            headers={"Content-Disposition": 'attachment; filename="contacts.xlsx"'},
        )
    # Read everything inside the request's session, then stream it out.
    chunks = [chunk async for chunk in export.csv_bytes(session, condition)]
    return StreamingResponse(
        iter(chunks),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="contacts.csv"'},
    )


@router.get("/contacts/{contact_id:uuid}", response_model=ContactDetail)
async def read_contact(_: ContactsRead, session: DBSession, contact_id: uuid.UUID) -> ContactDetail:
    return await _detail(session, await contact_service.get_contact(session, contact_id))


@router.patch(
    "/contacts/{contact_id:uuid}",
    response_model=ContactDetail,
    responses={
        422: {"description": "Invalid values; nothing was saved. `errors` maps each field to its reason"}
    },
)
async def update_contact(
    principal: ContactsWrite, session: DBSession, contact_id: uuid.UUID, data: ContactUpdate
) -> ContactDetail:
    contact = await contact_service.get_contact(session, contact_id)
    owner: uuid.UUID | str | None = "keep"
    if data.clear_owner:
        owner = None
    elif data.owner_id is not None:
        owner = data.owner_id
    changes = await attribute_service.update_contact(
        session, contact, profile=data.profile, attributes=data.attributes, owner_id=owner
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
    return await _detail(session, contact)


@router.get("/contacts/{contact_id:uuid}/timeline", response_model=list[TimelineItemRead])
async def contact_timeline(
    _: ContactsRead, session: DBSession, contact_id: uuid.UUID, limit: int = Query(50, ge=1, le=200)
) -> list[TimelineItemRead]:
    await contact_service.get_contact(session, contact_id)
    items = await contact_service.timeline(session, contact_id, limit=limit)
    return [TimelineItemRead(**item.as_dict()) for item in items]


@router.get("/contacts/{contact_id:uuid}/locations", response_model=list[LocationRead])
async def contact_locations(_: ContactsRead, session: DBSession, contact_id: uuid.UUID) -> list[LocationRead]:
    await contact_service.get_contact(session, contact_id)
    return [LocationRead(**p) for p in await contact_service.location_track(session, contact_id)]


@router.post("/contacts/{contact_id:uuid}/tags", response_model=ContactDetail)
async def tag_contact(
    principal: ContactsWrite, session: DBSession, contact_id: uuid.UUID, data: BulkTags
) -> Any:
    contact = await contact_service.get_contact(session, contact_id)
    await _add_tags(session, principal, [contact.id], data)
    return await _detail(session, contact)


@router.delete("/contacts/{contact_id:uuid}/tags/{tag_id}", response_model=ContactDetail)
async def untag_contact(
    _: ContactsWrite, session: DBSession, contact_id: uuid.UUID, tag_id: uuid.UUID
) -> Any:
    contact = await contact_service.get_contact(session, contact_id)
    await tag_service.remove_tags(session, [contact.id], [tag_id])
    return await _detail(session, contact)


# --- bulk actions -------------------------------------------------------------------------------


async def _selected(session: DBSession, selection: Selection) -> list[uuid.UUID]:
    if selection.all_matching:
        query = ListQuery(
            q=selection.q,
            tag_id=selection.tag_id,
            segment_id=selection.segment_id,
            stage=selection.stage,
            filter=segments.parse_filter(selection.filter) if selection.filter else None,
        )
        return await contact_service.matching_ids(session, query)
    if not selection.contact_ids:
        raise UnprocessableEntity("Select at least one contact")
    return list(selection.contact_ids)


async def _add_tags(
    session: DBSession, principal: Principal, contact_ids: list[uuid.UUID], data: BulkTags
) -> int:
    tag_ids = list(data.tag_ids)
    if data.tag_names:
        tag_ids += [t.id for t in await tag_service.tags_by_name(session, data.tag_names)]
    if not tag_ids:
        raise UnprocessableEntity("Choose at least one tag")
    return await tag_service.add_tags(
        session, contact_ids, tag_ids, source="agent", added_by_id=principal.user.id
    )


@router.post("/contacts/bulk/tag", response_model=BulkResult)
async def bulk_tag(principal: ContactsWrite, session: DBSession, data: BulkTags) -> BulkResult:
    ids = await _selected(session, data)
    changed = await _add_tags(session, principal, ids, data)
    await audit.record(
        session,
        actor=principal,
        action="contacts.bulk_tag",
        target_type="contact",
        target_id=None,
        changes={"contacts": len(ids), "added": changed},
    )
    return BulkResult(contacts=len(ids), changed=changed)


@router.post("/contacts/bulk/untag", response_model=BulkResult)
async def bulk_untag(principal: ContactsWrite, session: DBSession, data: BulkTags) -> BulkResult:
    ids = await _selected(session, data)
    tag_ids = list(data.tag_ids)
    if data.tag_names:
        tag_ids += [t.id for t in await tag_service.tags_by_name(session, data.tag_names, create=False)]
    if not tag_ids:
        raise UnprocessableEntity("Choose at least one tag")
    changed = await tag_service.remove_tags(session, ids, tag_ids)
    await audit.record(
        session,
        actor=principal,
        action="contacts.bulk_untag",
        target_type="contact",
        target_id=None,
        changes={"contacts": len(ids), "removed": changed},
    )
    return BulkResult(contacts=len(ids), changed=changed)


@router.post("/contacts/bulk/owner", response_model=BulkResult)
async def bulk_owner(principal: ContactsWrite, session: DBSession, data: BulkOwner) -> BulkResult:
    ids = await _selected(session, data)
    changed = await contact_service.assign_owner(session, ids, data.owner_id)
    await audit.record(
        session,
        actor=principal,
        action="contacts.bulk_owner",
        target_type="contact",
        target_id=None,
        changes={"contacts": len(ids), "owner_id": str(data.owner_id or "")},
    )
    return BulkResult(contacts=len(ids), changed=changed)


# --- segments -----------------------------------------------------------------------------------


@router.post("/segments/count", response_model=CountRead)
async def count_filter(_: ContactsRead, session: DBSession, data: CountRequest) -> CountRead:
    """The live count while a filter is edited: validated and counted, nothing stored."""
    group = segments.parse_filter(data.definition)
    started = time.perf_counter()
    total = await segments.count(session, group)
    return CountRead(count=total, ms=round((time.perf_counter() - started) * 1000, 1))


@router.get("/segments", response_model=list[SegmentRead])
async def list_segments(_: ContactsRead, session: DBSession) -> Any:
    return (await session.scalars(select(Segment).order_by(Segment.name))).all()


@router.post("/segments", response_model=SegmentRead, status_code=status.HTTP_201_CREATED)
async def create_segment(principal: ContactsWrite, session: DBSession, data: SegmentWrite) -> Any:
    segment = await segments.create_segment(
        session,
        name=data.name,
        definition=data.definition,
        description=data.description,
        created_by_id=principal.user.id,
    )
    await audit.record(
        session, actor=principal, action="segment.create", target_type="segment", target_id=segment.id
    )
    return segment


@router.get("/segments/{segment_id}", response_model=SegmentRead)
async def read_segment(_: ContactsRead, session: DBSession, segment_id: uuid.UUID) -> Any:
    return await segments.get_segment(session, segment_id)


@router.patch("/segments/{segment_id}", response_model=SegmentRead)
async def update_segment(
    _: ContactsWrite, session: DBSession, segment_id: uuid.UUID, data: SegmentUpdate
) -> Any:
    return await segments.update_segment(
        session, segment_id, name=data.name, definition=data.definition, description=data.description
    )


@router.delete("/segments/{segment_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_segment(principal: ContactsWrite, session: DBSession, segment_id: uuid.UUID) -> None:
    segment = await segments.get_segment(session, segment_id)
    await session.delete(segment)
    await audit.record(
        session, actor=principal, action="segment.delete", target_type="segment", target_id=segment_id
    )


@router.get("/segments/{segment_id}/count", response_model=CountRead)
async def count_segment(_: ContactsRead, session: DBSession, segment_id: uuid.UUID) -> CountRead:
    segment = await segments.get_segment(session, segment_id)
    started = time.perf_counter()
    total = await segments.count(session, segments.parse_filter(segment.definition))
    return CountRead(count=total, ms=round((time.perf_counter() - started) * 1000, 1))


# --- lifecycle rules ---------------------------------------------------------------------------


@router.get("/contact-lifecycle", response_model=LifecycleRules)
async def read_rules(_: ContactsRead, session: DBSession) -> LifecycleRules:
    return await lifecycle.get_rules(session)


@router.put("/contact-lifecycle", response_model=LifecycleRules)
async def write_rules(principal: SettingsWrite, session: DBSession, data: LifecycleRules) -> LifecycleRules:
    await lifecycle.set_rules(session, data)
    await audit.record(
        session,
        actor=principal,
        action="contacts.lifecycle_rules",
        target_type="setting",
        target_id=None,
        changes=data.model_dump(),
    )
    return data


# --- merge, undo, split --------------------------------------------------------------------------


class MergeRequest(Schema):
    into_id: uuid.UUID
    reason: str = ""


class MergeRead(Schema):
    id: uuid.UUID
    source_id: uuid.UUID
    target_id: uuid.UUID
    reason: str
    created_at: datetime
    undone_at: datetime | None


@router.post(
    "/contacts/{contact_id:uuid}/merge", response_model=MergeRead, status_code=status.HTTP_201_CREATED
)
async def merge_contact(
    principal: ContactsWrite, session: DBSession, contact_id: uuid.UUID, data: MergeRequest
) -> Any:
    """Merges this contact into ``into_id``: this one disappears from lists; the merge can be undone."""
    if data.into_id == contact_id:
        raise UnprocessableEntity("A contact cannot be merged into itself")
    source = await contact_service.get_contact(session, contact_id)
    target = await contact_service.get_contact(session, data.into_id)
    await merge.merge_contacts(
        session,
        source=source,
        target=target,
        reason=data.reason or "merged by an agent",
        actor_id=principal.user.id,
    )
    row = (await merge.merges_of(session, source.id))[0]
    await audit.record(
        session,
        actor=principal,
        action="contact.merge",
        target_type="contact",
        target_id=target.id,
        changes={"source": str(source.id)},
    )
    return row


@router.get("/contacts/{contact_id:uuid}/merges", response_model=list[MergeRead])
async def contact_merges(_: ContactsRead, session: DBSession, contact_id: uuid.UUID) -> Any:
    return await merge.merges_of(session, contact_id)


@router.post("/contact-merges/{merge_id}/undo", response_model=MergeRead)
async def undo_contact_merge(principal: ContactsWrite, session: DBSession, merge_id: uuid.UUID) -> Any:
    row = await merge.undo_merge(session, merge_id, actor_id=principal.user.id)
    await audit.record(
        session, actor=principal, action="contact.merge_undo", target_type="contact", target_id=row.source_id
    )
    return row


@router.post(
    "/contacts/{contact_id:uuid}/identities/{identity_id}/split",
    response_model=ContactDetail,
    status_code=status.HTTP_201_CREATED,
)
async def split_contact_identity(
    principal: ContactsWrite, session: DBSession, contact_id: uuid.UUID, identity_id: uuid.UUID
) -> ContactDetail:
    """Moves one identity (with what came through it) to a new contact, returned."""
    identity = await session.get(ContactIdentity, identity_id)
    if identity is None or identity.contact_id != contact_id:
        raise NotFound("No such identity on this contact")
    new = await merge.split_identity(session, identity_id)
    await audit.record(
        session,
        actor=principal,
        action="contact.split",
        target_type="contact",
        target_id=new.id,
        changes={"from": str(contact_id), "identity": str(identity_id)},
    )
    return await _detail(session, new)


@router.post("/contacts/{contact_id:uuid}/refresh-profile", status_code=status.HTTP_202_ACCEPTED)
async def refresh_profile(_: ContactsWrite, session: DBSession, contact_id: uuid.UUID) -> dict[str, int]:
    """Queues the contact's platform profiles (WeChat user info) to be fetched again by the profile worker."""
    await contact_service.get_contact(session, contact_id)
    result = await session.execute(
        update(ContactIdentity)
        .where(ContactIdentity.contact_id == contact_id, ContactIdentity.kind == IdentityKind.wechat_openid)
        .values(profile_synced_at=None)
    )
    return {"identities": int(getattr(result, "rowcount", 0) or 0)}
