from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import Boolean, Date, ForeignKey, Index, Integer, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column, relationship

from parley.kit.types import JSONType, UTCDateTime, utcnow
from parley.models.base import Base, BigIntPK, TimestampMixin, UUIDModel


class Contact(TimestampMixin, UUIDModel):
    """One customer, however many channels and accounts they use."""

    __tablename__ = "contacts"
    __table_args__ = (
        Index("ix_contacts_last_inbound", "last_inbound_at"),
        Index("ix_contacts_phone", "phone"),
        # Segment counts read contact ids from these alone (covering: the id is in the index),
        # see parley/contacts/segments.py; custom attributes get expression indexes at run time.
        Index("ix_contacts_followed_id", "last_followed_at", "id"),
        Index("ix_contacts_unfollowed_id", "last_unfollowed_at", "id"),
        Index("ix_contacts_inbound_id", "last_inbound_at", "id"),
        Index("ix_contacts_outbound_id", "last_outbound_at", "id"),
        Index("ix_contacts_stage_id", "lifecycle_stage", "id"),
        # A segment count probes contacts by id for the survivors of its tag and attribute sets;
        # with the activity columns in the index, "live, and followed/wrote within N days" is
        # checked without reading the (wide) row.
        Index(
            "ix_contacts_id_activity",
            "id",
            "merged_into_id",
            "last_followed_at",
            "last_inbound_at",
            "last_outbound_at",
        ),
        Index("ix_contacts_owner", "owner_id"),
        Index("ix_contacts_display_name", "display_name"),
    )

    display_name: Mapped[str] = mapped_column(String(200), default="", nullable=False)
    avatar_url: Mapped[str] = mapped_column(String(1000), default="", nullable=False)
    phone: Mapped[str | None] = mapped_column(String(32), nullable=True)
    email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    gender: Mapped[str] = mapped_column(String(16), default="unknown", nullable=False)
    language: Mapped[str] = mapped_column(String(32), default="", nullable=False)
    city: Mapped[str] = mapped_column(String(100), default="", nullable=False)
    province: Mapped[str] = mapped_column(String(100), default="", nullable=False)
    country: Mapped[str] = mapped_column(String(100), default="", nullable=False)
    birthday: Mapped[date | None] = mapped_column(Date, nullable=True)
    owner_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    lifecycle_stage: Mapped[str] = mapped_column(String(32), default="new", nullable=False)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict, nullable=False)
    first_followed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_followed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_unfollowed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_inbound_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_outbound_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    inbound_count: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    outbound_count: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    # Set when this contact was merged into another; kept so the merge can be undone.
    merged_into_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True, index=True)

    identities: Mapped[list[ContactIdentity]] = relationship(back_populates="contact", lazy="raise")


class IdentityKind:
    wechat_openid = "wechat_openid"  # per account
    wechat_unionid = "wechat_unionid"  # across the accounts of one WeChat Open Platform
    whatsapp_id = "whatsapp_id"  # wa_id, the phone-number based id, per account
    whatsapp_bsuid = "whatsapp_bsuid"  # business-scoped user id (2026)
    whatsapp_username = "whatsapp_username"
    phone = "phone"  # verified E.164 number, global
    email = "email"
    webchat = "webchat"


class ContactIdentity(UUIDModel):
    """A way to reach or recognise a contact.

    ``scope`` is the channel account id for per-account ids (OpenID, wa_id) and
    the empty string for global ones (UnionID, phone, email): a plain string so
    that the unique constraint holds on both databases (NULLs never collide).
    """

    __tablename__ = "contact_identities"
    __table_args__ = (
        UniqueConstraint("kind", "scope", "value", name="uq_contact_identities_kind_scope_value"),
        Index("ix_contact_identities_contact", "contact_id"),
    )

    contact_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    account_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("channel_accounts.id", ondelete="CASCADE"), nullable=True
    )
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    scope: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    value: Mapped[str] = mapped_column(String(255), nullable=False)
    verified: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    # When the platform profile behind this identity was last fetched (WeChat user info).
    profile_synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    contact: Mapped[Contact] = relationship(back_populates="identities", lazy="raise")


class TimelineEvent(Base):
    """Something that happened with a contact that is not a message: follow, scan, menu click, location."""

    __tablename__ = "timeline_events"
    __table_args__ = (Index("ix_timeline_events_contact_time", "contact_id", "occurred_at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    contact_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    account_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("channel_accounts.id", ondelete="SET NULL"), nullable=True
    )
    type: Mapped[str] = mapped_column(String(48), nullable=False)
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict, nullable=False)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    inbound_event_id: Mapped[int | None] = mapped_column(
        ForeignKey("inbound_events.id", ondelete="SET NULL"), nullable=True
    )


class TagGroup(TimestampMixin, UUIDModel):
    """A family of tags (interest, value tier, source…); its colour is the default for its tags."""

    __tablename__ = "tag_groups"

    name: Mapped[str] = mapped_column(String(100), unique=True, nullable=False)
    color: Mapped[str] = mapped_column(String(16), default="#64748b", nullable=False)
    position: Mapped[int] = mapped_column(Integer, default=0, nullable=False)


class Tag(TimestampMixin, UUIDModel):
    """A label on contacts, added by agents, automation or import; names are unique, case-sensitively."""

    __tablename__ = "tags"

    name: Mapped[str] = mapped_column(String(100), unique=True, nullable=False)
    group_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tag_groups.id", ondelete="SET NULL"), nullable=True, index=True
    )
    # Empty means "use the group's colour".
    color: Mapped[str] = mapped_column(String(16), default="", nullable=False)


class ContactTag(Base):
    """A tag on a contact. Keyed (tag, contact) so that counting a tag's contacts reads one index range."""

    __tablename__ = "contact_tags"
    __table_args__ = (Index("ix_contact_tags_contact", "contact_id"),)

    tag_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True)
    contact_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True
    )
    # Who added it: "agent", "automation", "import", "api"; with the user when an agent did.
    source: Mapped[str] = mapped_column(String(16), default="agent", nullable=False)
    added_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)


class AttributeType:
    text = "text"
    number = "number"
    date = "date"
    boolean = "boolean"
    choice = "choice"  # one of ``options``
    multi_choice = "multi_choice"  # a subset of ``options``

    ALL = (text, number, date, boolean, choice, multi_choice)


class AttributeDefinition(TimestampMixin, UUIDModel):
    """A custom contact attribute an administrator defines; values live in ``contacts.attributes[key]``."""

    __tablename__ = "attribute_definitions"

    key: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    label: Mapped[str] = mapped_column(String(200), nullable=False)
    type: Mapped[str] = mapped_column(String(16), nullable=False)
    options: Mapped[list[str]] = mapped_column(JSONType, default=list, nullable=False)
    required: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    position: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
