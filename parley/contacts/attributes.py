"""Custom attribute definitions (Settings → Contact fields) and validated profile edits."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.contacts.fields import (
    STANDARD_FIELDS,
    FieldError,
    coerce_attribute,
    coerce_standard,
    valid_attribute_key,
)
from parley.exceptions import Conflict, NotFound, UnprocessableEntity
from parley.models import AttributeDefinition, AttributeType, Contact, User


class InvalidValues(UnprocessableEntity):
    """Some submitted values cannot be stored; ``errors`` maps each field to its reason."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors.items()))
        self.errors = errors

    def payload(self) -> dict[str, Any]:
        return {**super().payload(), "errors": self.errors}


async def definitions(session: AsyncSession) -> list[AttributeDefinition]:
    return list(
        (
            await session.scalars(
                select(AttributeDefinition).order_by(AttributeDefinition.position, AttributeDefinition.key)
            )
        ).all()
    )


def _check_definition(key: str, label: str, type_: str, options: list[str]) -> list[str]:
    if not valid_attribute_key(key):
        raise UnprocessableEntity(
            f"{key!r} is not a valid key (lower-case letters, digits and _, starting with a letter)"
        )
    if key in STANDARD_FIELDS:
        raise UnprocessableEntity(f"{key!r} is a standard contact field")
    if not label.strip():
        raise UnprocessableEntity("A contact field needs a label")
    if type_ not in AttributeType.ALL:
        raise UnprocessableEntity(f"{type_!r} is not one of: {', '.join(AttributeType.ALL)}")
    cleaned = list(dict.fromkeys(o.strip() for o in options if o.strip()))
    if type_ in (AttributeType.choice, AttributeType.multi_choice) and not cleaned:
        raise UnprocessableEntity("A choice field needs at least one option")
    if type_ not in (AttributeType.choice, AttributeType.multi_choice):
        cleaned = []
    return cleaned


async def create_definition(
    session: AsyncSession,
    *,
    key: str,
    label: str,
    type: str,
    options: list[str] | None = None,
    required: bool = False,
) -> AttributeDefinition:
    key = key.strip()
    cleaned = _check_definition(key, label, type, options or [])
    if await session.scalar(select(AttributeDefinition.id).where(AttributeDefinition.key == key)):
        raise Conflict(f"A contact field with the key {key!r} exists")
    position = await session.scalar(select(func.coalesce(func.max(AttributeDefinition.position), 0))) or 0
    definition = AttributeDefinition(
        key=key,
        label=label.strip()[:200],
        type=type,
        options=cleaned,
        required=required,
        position=position + 1,
    )
    session.add(definition)
    await session.flush()
    return definition


async def update_definition(
    session: AsyncSession,
    definition_id: uuid.UUID,
    *,
    label: str | None = None,
    options: list[str] | None = None,
    required: bool | None = None,
) -> AttributeDefinition:
    """Key and type stay fixed: stored values and saved segments depend on them."""
    definition = await session.get(AttributeDefinition, definition_id)
    if definition is None:
        raise NotFound("No such contact field")
    cleaned = _check_definition(
        definition.key,
        label if label is not None else definition.label,
        definition.type,
        options if options is not None else definition.options,
    )
    if label is not None:
        definition.label = label.strip()[:200]
    if options is not None:
        definition.options = cleaned
    if required is not None:
        definition.required = required
    await session.flush()
    return definition


async def delete_definition(session: AsyncSession, definition_id: uuid.UUID) -> None:
    definition = await session.get(AttributeDefinition, definition_id)
    if definition is None:
        raise NotFound("No such contact field")
    # Stored values are left in contacts.attributes: deleting a field by mistake loses no data.
    await session.delete(definition)
    await session.flush()


async def update_contact(
    session: AsyncSession,
    contact: Contact,
    *,
    profile: dict[str, Any] | None = None,
    attributes: dict[str, Any] | None = None,
    owner_id: uuid.UUID | str | None = "keep",
) -> dict[str, Any]:
    """Validates every submitted value first and stores nothing unless all are valid.

    Returns the changes as ``{field: [before, after]}`` for the audit log.
    """
    errors: dict[str, str] = {}
    new_profile: dict[str, Any] = {}
    for name, raw in (profile or {}).items():
        try:
            new_profile[name] = coerce_standard(name, raw)
        except FieldError as exc:
            errors[name] = exc.message
    new_attributes: dict[str, Any] = {}
    if attributes:
        defs = {d.key: d for d in await definitions(session)}
        for key, raw in attributes.items():
            definition = defs.get(key)
            if definition is None:
                errors[key] = "is not a contact field"
                continue
            try:
                new_attributes[key] = coerce_attribute(definition, raw)
            except FieldError as exc:
                errors[key] = exc.message
    owner: uuid.UUID | None = None
    if owner_id != "keep" and owner_id is not None:
        owner = owner_id if isinstance(owner_id, uuid.UUID) else None
        user = await session.get(User, owner) if owner else None
        if user is None or not user.is_active:
            errors["owner_id"] = "is not an active user"
    if errors:
        raise InvalidValues(errors)
    changes: dict[str, Any] = {}
    for name, value in new_profile.items():
        before = getattr(contact, name)
        if before != value:
            changes[name] = [_plain(before), _plain(value)]
            setattr(contact, name, value)
    if new_attributes:
        merged = dict(contact.attributes)
        for key, value in new_attributes.items():
            if merged.get(key) != value:
                changes[f"attributes.{key}"] = [merged.get(key), value]
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        # A new dict, so that the JSON column is seen as changed.
        contact.attributes = merged
    if owner_id != "keep" and contact.owner_id != owner:
        changes["owner_id"] = [_plain(contact.owner_id), _plain(owner)]
        contact.owner_id = owner
    await session.flush()
    return changes


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)
