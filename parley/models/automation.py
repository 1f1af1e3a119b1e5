"""Automation: keyword and event replies, unmatched texts, flows (versions, runs, steps) and menus."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from parley.kit.types import JSONType, UTCDateTime, utcnow
from parley.models.base import Base, BigIntPK, TimestampMixin, UUIDModel


class AutoReplyRule(TimestampMixin, UUIDModel):
    """An automatic answer on one account: to keywords, to a follow, or to a scan of a QR scene.

    ``keywords`` is a list of ``{"text", "match"}`` (exact, contains, fuzzy);
    ``replies`` a list of reply payloads, one picked at random; ``schedule``
    limits the rule to days and hours in a time zone; ``flow_id`` starts a
    flow instead of (or after) the reply.
    """

    __tablename__ = "automation_rules"
    __table_args__ = (Index("ix_automation_rules_account_trigger", "account_id", "trigger"),)

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("channel_accounts.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    trigger: Mapped[str] = mapped_column(String(16), default="keyword", nullable=False)  # keyword|follow|scan
    keywords: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list, nullable=False)
    scene: Mapped[str | None] = mapped_column(String(128), nullable=True)
    replies: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list, nullable=False)
    flow_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("automation_flows.id", ondelete="SET NULL"), nullable=True
    )
    schedule: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    priority: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, nullable=False)


class UnmatchedText(Base):
    """An inbound text no rule answered, kept so administrators can turn frequent ones into rules."""

    __tablename__ = "automation_unmatched"
    __table_args__ = (Index("ix_automation_unmatched_account_at", "account_id", "created_at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("channel_accounts.id", ondelete="CASCADE"))
    contact_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    text: Mapped[str] = mapped_column(Text, nullable=False)
    normalized: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)


class Flow(TimestampMixin, UUIDModel):
    """A named flow; its behaviour lives in immutable versions, the newest published one serving new runs."""

    __tablename__ = "automation_flows"

    name: Mapped[str] = mapped_column(String(200), nullable=False)
    account_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("channel_accounts.id", ondelete="CASCADE"), nullable=True
    )
    current_version: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, nullable=False)


class FlowVersion(Base):
    __tablename__ = "automation_flow_versions"
    __table_args__ = (
        UniqueConstraint("flow_id", "version", name="uq_automation_flow_versions_flow_version"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    flow_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("automation_flows.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    definition: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)


class FlowRun(TimestampMixin, UUIDModel):
    """One contact going through one flow version; its whole state is here, so a restart resumes it."""

    __tablename__ = "automation_flow_runs"
    __table_args__ = (
        Index("ix_automation_flow_runs_due", "status", "wake_at"),
        Index("ix_automation_flow_runs_conversation", "conversation_id", "status"),
        # Every inbound message asks whether a flow waits for this contact's reply.
        Index("ix_automation_flow_runs_contact", "contact_id", "status"),
    )

    flow_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("automation_flows.id", ondelete="CASCADE"))
    version_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("automation_flow_versions.id", ondelete="CASCADE")
    )
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    account_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("channel_accounts.id", ondelete="CASCADE"), nullable=True
    )
    contact_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    conversation_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    # running | waiting_reply | waiting_time | finished | handed_off | failed
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    node_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    variables: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict, nullable=False)
    trigger: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict, nullable=False)
    wake_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class FlowStep(Base):
    """What one node did in a run, in order: the run's inspectable history."""

    __tablename__ = "automation_flow_steps"
    __table_args__ = (Index("ix_automation_flow_steps_run", "run_id", "seq"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("automation_flow_runs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer, nullable=False)
    node_id: Mapped[str] = mapped_column(String(64), nullable=False)
    type: Mapped[str] = mapped_column(String(16), nullable=False)
    detail: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)


class Menu(TimestampMixin, UUIDModel):
    """An account's WeChat custom menu: the edited draft and what was last published."""

    __tablename__ = "automation_menus"

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("channel_accounts.id", ondelete="CASCADE"), unique=True
    )
    buttons: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list, nullable=False)
    published: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType, nullable=True)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class KbCategory(TimestampMixin, UUIDModel):
    """A knowledge-base category (one level of nesting through ``parent_id``)."""

    __tablename__ = "kb_categories"

    parent_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("kb_categories.id", ondelete="SET NULL"), nullable=True
    )
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    position: Mapped[int] = mapped_column(Integer, default=0, nullable=False)


class KbArticle(TimestampMixin, UUIDModel):
    """A knowledge-base article in one language; ``answer`` is what goes to the customer (default: the body)."""

    __tablename__ = "kb_articles"
    __table_args__ = (Index("ix_kb_articles_language", "language", "is_published"),)

    category_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("kb_categories.id", ondelete="SET NULL"), nullable=True
    )
    language: Mapped[str] = mapped_column(String(16), nullable=False)  # zh_CN, en, …
    title: Mapped[str] = mapped_column(String(300), nullable=False)
    body: Mapped[str] = mapped_column(Text, nullable=False)
    answer: Mapped[str | None] = mapped_column(Text, nullable=True)
    keywords: Mapped[list[str]] = mapped_column(JSONType, default=list, nullable=False)
    is_published: Mapped[bool] = mapped_column(Boolean, default=True, nullable=False)
