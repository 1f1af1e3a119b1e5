"""Finding the contact behind a platform sender, creating it on first contact.

Identities sharing a WeChat UnionID, or a verified phone number (a WhatsApp
number is one), resolve to one contact, so a customer who follows two of a
brand's accounts and also writes on WhatsApp is one person in the CRM.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from parley.channels.base import ChannelType, Sender
from parley.contacts.merge import live_contact_id
from parley.kit.rows import insert_row
from parley.kit.types import utcnow
from parley.models import ChannelAccount, Contact, ContactIdentity, IdentityKind


@dataclass(frozen=True)
class Key:
    kind: str
    scope: str
    value: str
    verified: bool = False


def identity_keys(account: ChannelAccount, sender: Sender) -> list[Key]:
    """The identities a sender carries, most specific first."""
    scope = str(account.id)
    keys: list[Key] = []
    if account.type == ChannelType.wechat:
        keys.append(Key(IdentityKind.wechat_openid, scope, sender.id, True))
        if sender.unionid:
            keys.append(Key(IdentityKind.wechat_unionid, "", sender.unionid, True))
    elif account.type == ChannelType.whatsapp:
        keys.append(Key(IdentityKind.whatsapp_id, scope, sender.id, True))
        if sender.bsuid and sender.bsuid != sender.id:
            keys.append(Key(IdentityKind.whatsapp_bsuid, scope, sender.bsuid, True))
        if sender.username:
            keys.append(Key(IdentityKind.whatsapp_username, "", sender.username.lower(), True))
    else:
        keys.append(Key(account.type, scope, sender.id))
    if sender.phone:
        # WhatsApp numbers are verified by the platform; so is any phone a platform reports.
        keys.append(Key(IdentityKind.phone, "", normalise_phone(sender.phone), True))
    return keys


_CHANNEL_LABEL: dict[str, str] = {ChannelType.wechat.value: "WeChat", ChannelType.whatsapp.value: "WhatsApp"}


def placeholder_name(account: ChannelAccount, sender: Sender) -> str:
    """A name agents can tell apart until a real one is known.

    WeChat no longer reveals nicknames to Official Accounts (since 2021-12), so
    most WeChat customers would otherwise all be called "unknown".
    """
    label = _CHANNEL_LABEL.get(account.type, account.type)
    return f"{label} ·{sender.id[-8:]}"


def normalise_phone(phone: str) -> str:
    digits = "".join(ch for ch in phone if ch.isdigit())
    return f"+{digits}" if digits else phone


def new_contact_values(account: ChannelAccount, sender: Sender) -> dict[str, Any]:
    """The row of the contact a sender becomes on first contact."""
    return {
        "id": uuid.uuid4(),
        "display_name": sender.display_name
        or sender.username
        or sender.phone
        or placeholder_name(account, sender),
        "phone": normalise_phone(sender.phone) if sender.phone else None,
        "attributes": {},
    }


def identity_values(contact_id: uuid.UUID, account: ChannelAccount, key: Key) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "contact_id": contact_id,
        "account_id": account.id if key.scope else None,
        "kind": key.kind,
        "scope": key.scope,
        "value": key.value,
        "verified": key.verified,
        "created_at": utcnow(),
    }


async def find_identity(session: AsyncSession, key: Key) -> ContactIdentity | None:
    return await session.scalar(
        select(ContactIdentity).where(
            ContactIdentity.kind == key.kind,
            ContactIdentity.scope == key.scope,
            ContactIdentity.value == key.value,
        )
    )


async def _live_contact(session: AsyncSession, contact_id: uuid.UUID) -> Contact | None:
    return await session.get(Contact, await live_contact_id(session, contact_id))


async def attach_identity(session: AsyncSession, contact: Contact, account: ChannelAccount, key: Key) -> None:
    """Adds an identity unless it exists; a concurrent insert of the same one is not an error."""
    if await find_identity(session, key) is not None:
        return
    await _insert_identity(session, contact, account, key)


# The inbound pipeline's hot statements, built once: SQLAlchemy memoizes a statement's cache key on the
# object, so a prebuilt statement skips construction and cache-key generation on every message.
IDENTITY_MATCH = and_(
    ContactIdentity.kind == bindparam("kind"),
    ContactIdentity.scope == bindparam("scope"),
    ContactIdentity.value == bindparam("value"),
)
_IDENTITY_CONTACT = (
    select(ContactIdentity.contact_id, Contact)
    .outerjoin(Contact, Contact.id == ContactIdentity.contact_id)
    .where(IDENTITY_MATCH)
)


def _identity_insert(dialect_insert: Any) -> Any:
    return (
        dialect_insert(ContactIdentity.__table__)
        .on_conflict_do_nothing(index_elements=["kind", "scope", "value"])
        .returning(ContactIdentity.__table__.c.id)
    )


_IDENTITY_INSERTS = {
    "postgresql": _identity_insert(postgresql.insert),
    "sqlite": _identity_insert(sqlite.insert),
}
# Many identities at once (parley/conversations/batch.py): what was added, told by its key.
IDENTITY_BATCH_INSERTS = {
    name: stmt.returning(
        ContactIdentity.__table__.c.kind, ContactIdentity.__table__.c.scope, ContactIdentity.__table__.c.value
    )
    for name, stmt in _IDENTITY_INSERTS.items()
}


async def _insert_identity(
    session: AsyncSession, contact: Contact, account: ChannelAccount, key: Key
) -> bool:
    """Inserts the identity unless one with the same key exists (whoever's); True if this call added it.

    ``ON CONFLICT DO NOTHING`` rather than a savepoint around an ORM insert: a concurrent insert of
    the same identity loses quietly in one statement instead of three.
    """
    stmt = _IDENTITY_INSERTS[session.get_bind().dialect.name]
    added = await session.scalar(stmt, identity_values(contact.id, account, key))
    return added is not None


async def resolve_contact(
    session: AsyncSession, *, account: ChannelAccount, sender: Sender
) -> tuple[Contact, bool]:
    """Returns the sender's contact and whether it was created now."""
    contact, created, _row = await resolve_contact_row(session, account=account, sender=sender)
    return contact, created


async def resolve_contact_row(
    session: AsyncSession,
    *,
    account: ChannelAccount,
    sender: Sender,
    lookup: Any = _IDENTITY_CONTACT,
    params: dict[str, Any] | None = None,
    decode: Callable[[Any], Sequence[Any]] | None = None,
) -> tuple[Contact, bool, Any]:
    """:func:`resolve_contact`, also returning the lookup row that found the contact.

    ``lookup`` selects ``(ContactIdentity.contact_id, Contact, ...)`` for the ``kind``, ``scope`` and
    ``value`` parameters (plus ``params``), so a caller can read, in the same statement, what it
    needs to know about the contact next; ``decode`` turns a Core row into that shape. The row is
    None unless it holds the contact returned (a created contact, or one reached by following a
    merge, has none).
    """
    keys = identity_keys(account, sender)
    contact: Contact | None = None
    found: Any = None
    exists: dict[Key, bool] = {}
    for key in keys:
        # The identity and its contact in one statement; merges are followed only when there was one.
        raw = (
            await session.execute(
                lookup, {"kind": key.kind, "scope": key.scope, "value": key.value, **(params or {})}
            )
        ).first()
        exists[key] = raw is not None
        if raw is not None:
            row: Sequence[Any] = decode(raw) if decode is not None else raw
            contact_id = row[0]
            candidate: Contact | None = row[1]  # None: the identity outlived its contact
            if candidate is not None and candidate.merged_into_id is None:
                contact, found = candidate, row
            else:
                contact = await _live_contact(session, contact_id)
            if contact is not None:
                break
    created = contact is None
    if contact is None:
        contact = await insert_row(session, Contact, new_contact_values(account, sender))
    else:
        if sender.display_name and not contact.display_name:
            contact.display_name = sender.display_name
        if sender.phone and not contact.phone:
            contact.phone = normalise_phone(sender.phone)
    first_added = False
    for index, key in enumerate(keys):
        if exists.get(key):
            continue  # already someone's identity: left as it is
        added = await _insert_identity(session, contact, account, key)
        if index == 0:
            first_added = added
    if created and not first_added:
        # Two nodes may have created the same new contact at once; the identity
        # insert that lost the race tells us, and we adopt the winner's contact.
        owner = await find_identity(session, keys[0])
        if owner is not None and owner.contact_id != contact.id:
            await session.delete(contact)
            await session.flush()
            winner = await _live_contact(session, owner.contact_id)
            if winner is not None:
                return winner, False, None
    return contact, created, found
