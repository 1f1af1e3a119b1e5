"""Segments: saved filters over contacts, validated with pydantic and compiled to one SQL query.

The same compiled condition serves the live count while an agent edits a
filter, the contact list, exports and (later) broadcast audiences, through
:func:`segment_contact_ids_query`. Nothing here is dialect-specific: JSON paths
compile to ``json_extract`` on SQLite and ``->>`` on PostgreSQL.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    except_,
    false,
    func,
    intersect,
    literal_column,
    not_,
    or_,
    select,
    true,
    union,
)
from sqlalchemy.ext.asyncio import AsyncSession

from parley.contacts.fields import STANDARD_FIELDS, valid_attribute_key
from parley.exceptions import Conflict, NotFound, UnprocessableEntity
from parley.kit.types import utcnow
from parley.models import ChannelAccount, Contact, ContactAttributeValue, ContactIdentity, ContactTag, Segment

STAGES = ("new", "active", "dormant", "lost")
MAX_DEPTH = 4
MAX_CONDITIONS = 50


class _Node(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FieldCondition(_Node):
    """A standard profile field: ``city eq 重庆``, ``email empty``."""

    type: Literal["field"]
    field: str
    op: Literal["eq", "ne", "in", "contains", "starts_with", "empty", "not_empty"]
    value: str | list[str] | None = None

    @field_validator("field")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in STANDARD_FIELDS or value == "birthday":
            raise ValueError(f"{value!r} is not a filterable contact field")
        return value


class AttributeCondition(_Node):
    """A custom attribute; numbers and dates compare in order, multiple choice by ``contains``."""

    type: Literal["attribute"]
    key: str
    # ``has``: a multiple-choice value includes the option; ``contains``: text includes the words.
    op: Literal["eq", "ne", "in", "gt", "gte", "lt", "lte", "contains", "has", "empty", "not_empty"]
    value: str | float | bool | list[str] | None = None

    @field_validator("key")
    @classmethod
    def _valid_key(cls, value: str) -> str:
        if not valid_attribute_key(value):
            raise ValueError(f"{value!r} is not an attribute key")
        return value


class TagCondition(_Node):
    """``any`` of the tags, ``all`` of them, or ``none`` of them."""

    type: Literal["tag"]
    op: Literal["any", "all", "none"] = "any"
    tag_ids: list[uuid.UUID] = Field(min_length=1, max_length=50)


class ChannelCondition(_Node):
    """Reachable on a channel type (``wechat``…) or on one channel account."""

    type: Literal["channel"]
    op: Literal["is", "is_not"] = "is"
    channel: str | None = None
    account_id: uuid.UUID | None = None


class StageCondition(_Node):
    type: Literal["stage"]
    op: Literal["in", "not_in"] = "in"
    stages: list[Literal["new", "active", "dormant", "lost"]] = Field(min_length=1)


class OwnerCondition(_Node):
    type: Literal["owner"]
    owner_id: uuid.UUID | None = None  # None: nobody owns the contact


ActivityEvent = Literal["followed", "first_followed", "unfollowed", "inbound", "outbound", "conversation"]


class ActivityCondition(_Node):
    """``followed within 30`` days; ``conversation not_within 60`` (no message either way); ``never``."""

    type: Literal["activity"]
    event: ActivityEvent
    op: Literal["within", "not_within", "never", "ever"]
    days: int | None = Field(default=None, ge=1, le=3650)


class Group(_Node):
    type: Literal["group"] = "group"
    match: Literal["all", "any"] = "all"
    conditions: list[Condition] = Field(default_factory=list)


Condition = Annotated[
    FieldCondition
    | AttributeCondition
    | TagCondition
    | ChannelCondition
    | StageCondition
    | OwnerCondition
    | ActivityCondition
    | Group,
    Field(discriminator="type"),
]
Group.model_rebuild()


def _check_shape(group: Group) -> None:
    count = 0

    def walk(node: Group, depth: int) -> None:
        nonlocal count
        if depth > MAX_DEPTH:
            raise UnprocessableEntity(f"A filter nests at most {MAX_DEPTH} groups deep")
        for child in node.conditions:
            count += 1
            if isinstance(child, Group):
                walk(child, depth + 1)
            elif (
                isinstance(child, ActivityCondition)
                and child.op in ("within", "not_within")
                and not child.days
            ):
                raise UnprocessableEntity(f"'{child.event} {child.op}' needs a number of days")
            elif isinstance(child, FieldCondition | AttributeCondition) and child.op not in (
                "empty",
                "not_empty",
            ):
                if child.value is None or child.value == "" or child.value == []:
                    raise UnprocessableEntity(
                        f"'{getattr(child, 'field', None) or getattr(child, 'key', '')} {child.op}' needs a value"
                    )
            elif isinstance(child, ChannelCondition) and not (child.channel or child.account_id):
                raise UnprocessableEntity("A channel condition needs a channel or an account")

    walk(group, 1)
    if count > MAX_CONDITIONS:
        raise UnprocessableEntity(f"A filter has at most {MAX_CONDITIONS} conditions")


def parse_filter(raw: Any) -> Group:
    """The validated filter tree, or a 422 that says which part is wrong."""
    try:
        group = Group.model_validate(raw or {"type": "group", "match": "all", "conditions": []})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UnprocessableEntity(f"Invalid filter at {where or 'top'}: {first['msg']}") from None
    _check_shape(group)
    return group


def _text_op(column: ColumnElement[Any], op: str, value: Any) -> ColumnElement[bool]:
    if op == "empty":
        return or_(column.is_(None), column == "")
    if op == "not_empty":
        return and_(column.is_not(None), column != "")
    if op == "in":
        values = value if isinstance(value, list) else [value]
        return column.in_([str(v) for v in values])
    if op == "eq":
        return column == str(value)
    if op == "ne":
        return or_(column.is_(None), column != str(value))
    if op == "contains":
        return column.contains(str(value), autoescape=True)
    if op == "starts_with":
        return column.startswith(str(value), autoescape=True)
    raise UnprocessableEntity(f"{op!r} does not apply here")


def _field(cond: FieldCondition) -> ColumnElement[bool]:
    column: ColumnElement[Any] = getattr(Contact, cond.field)
    value = cond.value
    if cond.field == "phone" and isinstance(value, str) and cond.op in ("eq", "ne"):
        from parley.contacts.fields import FieldError, normalise_phone

        try:
            value = normalise_phone("phone", value)
        except FieldError as exc:
            raise UnprocessableEntity(exc.message) from None
    return _text_op(column, cond.op, value)


def _attribute(cond: AttributeCondition) -> ColumnElement[bool]:
    element = Contact.attributes[cond.key]
    text: ColumnElement[Any] = element.as_string()
    value = cond.value
    if cond.op in ("gt", "gte", "lt", "lte"):
        if isinstance(value, bool) or value is None or isinstance(value, list):
            raise UnprocessableEntity(f"'{cond.key} {cond.op}' needs a number or a date")
        if isinstance(value, int | float):
            column: ColumnElement[Any] = element.as_float()
            bound: Any = float(value)
        else:
            # Dates are stored as ISO text, which sorts in date order.
            column, bound = text, str(value)
        comparisons: dict[str, ColumnElement[bool]] = {
            "gt": column > bound,
            "gte": column >= bound,
            "lt": column < bound,
            "lte": column <= bound,
        }
        return comparisons[cond.op]
    if isinstance(value, bool):
        boolean: ColumnElement[Any] = element.as_boolean()
        if cond.op == "eq":
            return boolean == value
        if cond.op == "ne":
            return or_(boolean.is_(None), boolean != value)
    if isinstance(value, int | float) and cond.op in ("eq", "ne"):
        number = element.as_float()
        return number == float(value) if cond.op == "eq" else or_(number.is_(None), number != float(value))
    if cond.op == "has":
        # A multiple-choice value reads as the JSON text of an array of option strings on
        # both databases, so the quoted option matches exactly one element.
        return text.contains(f'"{value}"', autoescape=True)
    return _text_op(text, cond.op, value)


def _tag(cond: TagCondition) -> ColumnElement[bool]:
    ids = list(dict.fromkeys(cond.tag_ids))
    tagged = select(ContactTag.contact_id).where(ContactTag.tag_id.in_(ids))
    if cond.op == "all" and len(ids) > 1:
        # One pass over the tags' index ranges rather than a correlated probe per contact,
        # so the planner can start from the (usually small) set of tagged contacts.
        tagged = tagged.group_by(ContactTag.contact_id).having(func.count() == len(ids))
    member = Contact.id.in_(tagged)
    return not_(member) if cond.op == "none" else member


def _channel(cond: ChannelCondition) -> ColumnElement[bool]:
    query = select(ContactIdentity.contact_id).where(ContactIdentity.account_id.is_not(None))
    if cond.account_id is not None:
        query = query.where(ContactIdentity.account_id == cond.account_id)
    if cond.channel:
        query = query.where(
            ContactIdentity.account_id.in_(
                select(ChannelAccount.id).where(ChannelAccount.type == cond.channel)
            )
        )
    reachable = Contact.id.in_(query)
    return reachable if cond.op == "is" else not_(reachable)


_ACTIVITY_COLUMNS = {
    "followed": "last_followed_at",
    "first_followed": "first_followed_at",
    "unfollowed": "last_unfollowed_at",
    "inbound": "last_inbound_at",
    "outbound": "last_outbound_at",
}


def _activity(cond: ActivityCondition) -> ColumnElement[bool]:
    columns = (
        [Contact.last_inbound_at, Contact.last_outbound_at]
        if cond.event == "conversation"
        else [getattr(Contact, _ACTIVITY_COLUMNS[cond.event])]
    )
    if cond.op == "never":
        return and_(*[c.is_(None) for c in columns])
    if cond.op == "ever":
        return or_(*[c.is_not(None) for c in columns])
    cutoff = utcnow() - timedelta(days=cond.days or 0)
    if cond.op == "within":
        return or_(*[c >= cutoff for c in columns])
    return and_(*[or_(c.is_(None), c < cutoff) for c in columns])


def _condition(node: Any) -> ColumnElement[bool]:
    if isinstance(node, Group):
        parts = [_condition(child) for child in node.conditions]
        if not parts:
            return true() if node.match == "all" else false()
        return and_(*parts) if node.match == "all" else or_(*parts)
    if isinstance(node, FieldCondition):
        return _field(node)
    if isinstance(node, AttributeCondition):
        return _attribute(node)
    if isinstance(node, TagCondition):
        return _tag(node)
    if isinstance(node, ChannelCondition):
        return _channel(node)
    if isinstance(node, StageCondition):
        stage = Contact.lifecycle_stage.in_(node.stages)
        return stage if node.op == "in" else not_(stage)
    if isinstance(node, OwnerCondition):
        return Contact.owner_id.is_(None) if node.owner_id is None else Contact.owner_id == node.owner_id
    if isinstance(node, ActivityCondition):
        return _activity(node)
    raise UnprocessableEntity("Unknown condition")


# --- Set form ---------------------------------------------------------------------------------
#
# A per-row predicate over a million contacts costs a probe of the wide contacts row for every
# candidate. Conditions that an index answers on its own (a tag, an attribute with its expression
# index, an activity window, a stage) are compiled instead to SELECTs of contact ids read from
# covering indexes; an "all" group becomes their INTERSECT, minus (EXCEPT) its negated ones, an
# "any" group of such sets their UNION. Only the ids that survive are probed in ``contacts``,
# for the remaining per-row conditions and for "not merged away". Conditions without an index
# (text contains, multiple choice, profile fields) stay per-row predicates, and a group with no
# indexed condition at all is evaluated per row as before: the result is the same either way.


def _attribute_set(cond: AttributeCondition) -> Any:
    """Ids from ``contact_attribute_values`` (kept by triggers), when its index answers the condition."""
    value = cond.value
    base = select(ContactAttributeValue.contact_id).where(ContactAttributeValue.key == cond.key)
    if value is None or isinstance(value, bool):
        return None
    if cond.op in ("gt", "gte", "lt", "lte"):
        column: Any = (
            ContactAttributeValue.num_value if isinstance(value, int | float) else ContactAttributeValue.value
        )
        bound: Any = float(value) if isinstance(value, int | float) else value
        if isinstance(bound, list):
            return None
        comparisons = {
            "gt": column > bound,
            "gte": column >= bound,
            "lt": column < bound,
            "lte": column <= bound,
        }
        return base.where(comparisons[cond.op])
    if cond.op == "eq" and isinstance(value, int | float):
        return base.where(ContactAttributeValue.num_value == float(value))
    if cond.op in ("eq", "has", "in"):
        values = value if isinstance(value, list) else [value]
        texts = [_json_text(v) for v in values]
        if any(len(t) > 200 for t in texts):
            return None  # beyond the indexed prefix: checked per row
        return base.where(
            ContactAttributeValue.value.in_(texts)
            if len(texts) > 1
            else ContactAttributeValue.value == texts[0]
        )
    return None


def _json_text(value: Any) -> str:
    """A scalar as the triggers store it: strings as they are, numbers in their shortest form."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _activity_set(cond: ActivityCondition) -> Any:
    columns = (
        [Contact.last_inbound_at, Contact.last_outbound_at]
        if cond.event == "conversation"
        else [getattr(Contact, _ACTIVITY_COLUMNS[cond.event])]
    )
    cutoff = utcnow() - timedelta(days=cond.days or 0)
    parts = [select(Contact.id).where(column >= cutoff) for column in columns]
    return parts[0] if len(parts) == 1 else union(*parts)


def _as_set(node: Any) -> tuple[bool, Any] | None:
    """``(negated, SELECT of ids)`` when an index answers the condition alone, else None."""
    if isinstance(node, TagCondition):
        ids = list(dict.fromkeys(node.tag_ids))
        if node.op == "all" and len(ids) > 1:
            return False, _intersect(
                [select(ContactTag.contact_id).where(ContactTag.tag_id == t) for t in ids]
            )
        return node.op == "none", select(ContactTag.contact_id).where(ContactTag.tag_id.in_(ids))
    if isinstance(node, ActivityCondition) and node.op in ("within", "not_within"):
        return node.op == "not_within", _activity_set(node)
    if isinstance(node, StageCondition):
        return node.op == "not_in", select(Contact.id).where(Contact.lifecycle_stage.in_(node.stages))
    if isinstance(node, AttributeCondition):
        found = _attribute_set(node)
        return (False, found) if found is not None else None
    if isinstance(node, Group):
        ids, residual, *_rest = _compile_group(node)
        if ids is not None and residual is None:
            return False, ids
    return None


def _selective(node: Any) -> bool:
    """Conditions whose id set is usually a small part of all contacts: tags and attribute values."""
    if isinstance(node, TagCondition):
        return node.op in ("any", "all")
    if isinstance(node, AttributeCondition):
        return node.op in ("eq", "in", "has")
    return False


def _wrap(query: Any) -> Any:
    """A compound SELECT as a plain one, so that it can take part in another set operation."""
    sub = query.subquery()
    return select(sub.c[0])


def _intersect(parts: list[Any]) -> Any:
    """The INTERSECT of id sets, in id order.

    Each set is an index range already in contact-id order (``(tag_id, contact_id)``,
    ``(key, value, contact_id)``); asked for that order, SQLite intersects them by merging
    the two index scans, where otherwise it copies the first set into a temporary B-tree
    and probes it with the second. PostgreSQL hashes either way.
    """
    return intersect(*[_wrap(p) for p in parts]).order_by(literal_column("1"))


def _residual_cost(node: Any) -> int:
    """Rough cost of a per-row condition: columns of the row first, JSON next, subqueries last.

    Evaluated in this order, a time window or stage drops most candidates before a custom
    attribute's JSON is parsed or a tag is looked up.
    """
    if isinstance(node, ActivityCondition | StageCondition | OwnerCondition | FieldCondition):
        return 0
    if isinstance(node, AttributeCondition):
        return 1
    return 2


def _joinable(node: Any) -> bool:
    """Whether the node's id set (from :func:`_as_set`) is one index range holding each contact once."""
    if isinstance(node, TagCondition):
        return node.op in ("any", "all") and len(set(node.tag_ids)) == 1
    if isinstance(node, AttributeCondition):
        # One value of one key: the (contact_id, key, value) primary key makes it unique.
        return node.op in ("eq", "has") and not isinstance(node.value, list)
    return False


def _parts(node: Any, found: Any) -> list[tuple[Any, bool]]:
    """A selective set as sets to intersect, each with whether it is joinable; "all of these tags" is one per tag."""
    if isinstance(node, TagCondition) and node.op == "all" and len(set(node.tag_ids)) > 1:
        return [
            (select(ContactTag.contact_id).where(ContactTag.tag_id == t), True)
            for t in dict.fromkeys(node.tag_ids)
        ]
    return [(found, _joinable(node))]


class _Compiled(NamedTuple):
    """Contacts in a group are those in ``ids`` (all when None) matching ``residual`` (all when None)."""

    ids: Any
    residual: ColumnElement[bool] | None
    # ``ids`` is one index range naming each contact once, so it can drive a join to contacts.
    # (A compound set is left to ``id IN (…)``: in a FROM clause SQLite drops the ORDER BY
    # that lets it merge an INTERSECT.)
    joinable: bool = False
    # The selective sets ``ids`` intersects, each with whether it is joinable as above.
    parts: tuple[tuple[Any, bool], ...] = ()


def _compile_group(group: Group) -> _Compiled:
    if not group.conditions:
        return _Compiled(None, true() if group.match == "all" else false())
    sets = [(child, _as_set(child)) for child in group.conditions]
    if group.match == "any":
        if all(found is not None and not found[0] for _child, found in sets):
            parts = [_wrap(found[1]) for _child, found in sets if found is not None]
            return _Compiled(parts[0] if len(parts) == 1 else union(*parts), None)
        return _Compiled(None, or_(*[_condition(child) for child in group.conditions]))
    # Intersecting is cheap only for small sets: when a selective set (a tag, an attribute
    # value) is there to start from, wide ones (time windows, ranges, stages, negations) are
    # checked per row on the survivors instead of being built as sets of their own.
    selective = [
        (child, found[1]) for child, found in sets if found is not None and not found[0] and _selective(child)
    ]
    if selective:
        chosen = {id(child) for child, _found in selective}
        rest = sorted((child for child in group.conditions if id(child) not in chosen), key=_residual_cost)
        residuals = [_condition(child) for child in rest]
        residual = and_(*residuals) if residuals else None
        split = tuple(part for child, found in selective for part in _parts(child, found))
        if len(selective) == 1:
            child, ids = selective[0]
            return _Compiled(ids, residual, _joinable(child), split)
        return _Compiled(_intersect([found for _child, found in selective]), residual, parts=split)
    positives = [found[1] for _child, found in sets if found is not None and not found[0]]
    if not positives:
        return _Compiled(None, and_(*[_condition(child) for child in group.conditions]))
    negatives = [found[1] for _child, found in sets if found is not None and found[0]]
    residuals = [_condition(child) for child, found in sets if found is None]
    ids = positives[0] if len(positives) == 1 else intersect(*[_wrap(p) for p in positives])
    for negative in negatives:
        ids = except_(_wrap(ids), _wrap(negative))
    return _Compiled(ids, and_(*residuals) if residuals else None)


def compile_filter(group: Group) -> ColumnElement[bool]:
    """The WHERE condition of a filter, over live (not merged-away) contacts."""
    ids, residual, *_rest = _compile_group(group)
    parts: list[ColumnElement[bool]] = [Contact.merged_into_id.is_(None)]
    if ids is not None:
        parts.append(Contact.id.in_(ids))
    if residual is not None:
        parts.append(residual)
    return and_(*parts)


def _live(ids: Any) -> Any:
    """The ids of a set minus merged-away contacts, without visiting the others' rows."""
    merged = select(Contact.id).where(Contact.merged_into_id.is_not(None))
    return select(except_(_wrap(ids), merged).subquery().c[0])


def filter_contact_ids_query(group: Group) -> Select[Any]:
    ids, residual, *_rest = _compile_group(group)
    if ids is not None and residual is None:
        return _live(ids)  # type: ignore[no-any-return]
    return select(Contact.id).where(compile_filter(group))


def segment_contact_ids_query(segment: Segment | Group | dict[str, Any]) -> Select[Any]:
    """A SELECT of the ids of the contacts in a segment, to embed in other queries (broadcast audiences)."""
    if isinstance(segment, Segment):
        group = parse_filter(segment.definition)
    elif isinstance(segment, Group):
        group = segment
    else:
        group = parse_filter(segment)
    return filter_contact_ids_query(group)


async def count(session: AsyncSession, group: Group) -> int:
    ids, residual, joinable, parts = _compile_group(group)
    live: list[ColumnElement[bool]] = [Contact.merged_into_id.is_(None)]
    if residual is not None:
        live.append(residual)
    if parts and session.get_bind().dialect.name == "postgresql":
        # PostgreSQL joins the sets' index-only scans (in contact-id order) and probes contacts
        # by primary key for the survivors; given an INTERSECT, it hashes every id of every set
        # and then scans all contacts to meet them.
        joined: Any = Contact.__table__
        semi: list[ColumnElement[bool]] = []
        for part, can_join in parts:
            if can_join:
                found = part.subquery()
                joined = joined.join(found, found.c[0] == Contact.id)
            else:
                semi.append(Contact.id.in_(part))
        query = select(func.count()).select_from(joined).where(*live, *semi)
    elif ids is not None and residual is None:
        query = select(func.count()).select_from(_live(ids).subquery())
    elif ids is not None and joinable:
        # Each id of the set visits its contact's row once, by primary key, with no copy of
        # the set in between (``id IN (…)`` would first build one).
        found = ids.subquery()
        query = select(func.count()).select_from(found.join(Contact, Contact.id == found.c[0])).where(*live)
    else:
        query = select(func.count()).select_from(Contact).where(compile_filter(group))
    return int(await session.scalar(query) or 0)


async def create_segment(
    session: AsyncSession,
    *,
    name: str,
    definition: Any,
    description: str = "",
    created_by_id: uuid.UUID | None,
) -> Segment:
    name = name.strip()
    if not name or len(name) > 200:
        raise UnprocessableEntity("A segment needs a name of at most 200 characters")
    group = parse_filter(definition)
    if await session.scalar(select(Segment.id).where(Segment.name == name)):
        raise Conflict(f"A segment named {name!r} exists")
    segment = Segment(
        name=name,
        description=description.strip()[:1000],
        definition=group.model_dump(mode="json"),
        created_by_id=created_by_id,
    )
    session.add(segment)
    await session.flush()
    return segment


async def update_segment(
    session: AsyncSession,
    segment_id: uuid.UUID,
    *,
    name: str | None = None,
    definition: Any = None,
    description: str | None = None,
) -> Segment:
    segment = await session.get(Segment, segment_id)
    if segment is None:
        raise NotFound("No such segment")
    if name is not None:
        name = name.strip()
        if not name or len(name) > 200:
            raise UnprocessableEntity("A segment needs a name of at most 200 characters")
        if await session.scalar(select(Segment.id).where(Segment.name == name, Segment.id != segment.id)):
            raise Conflict(f"A segment named {name!r} exists")
        segment.name = name
    if definition is not None:
        segment.definition = parse_filter(definition).model_dump(mode="json")
    if description is not None:
        segment.description = description.strip()[:1000]
    await session.flush()
    return segment


async def get_segment(session: AsyncSession, segment_id: uuid.UUID) -> Segment:
    segment = await session.get(Segment, segment_id)
    if segment is None:
        raise NotFound("No such segment")
    return segment
