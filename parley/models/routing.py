"""Routing (issue 7): queues (skill groups), their members, entry rules, agent capacity and queue entries."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from parley.kit.types import JSONType, UTCDateTime
from parley.models.base import Base, TimestampMixin, UUIDModel


class Strategy(StrEnum):
    longest_waiting = "longest_waiting"  # the agent who has waited longest for work gets it
    round_robin = "round_robin"
    least_busy = "least_busy"
    proportional = "proportional"


class EntryStatus(StrEnum):
    waiting = "waiting"
    assigned = "assigned"
    overflowed = "overflowed"  # moved on to the overflow queue
    transferred = "transferred"  # moved on by an agent or supervisor
    abandoned = "abandoned"  # resolved (or taken by hand) before routing assigned it
    rejected = "rejected"  # queue full or closed: never waited


class RoutingQueue(TimestampMixin, UUIDModel):
    __tablename__ = "routing_queues"

    name: Mapped[str] = mapped_column(String(120), unique=True, nullable=False)
    description: Mapped[str] = mapped_column(Text, default="", nullable=False)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, nullable=False)
    strategy: Mapped[str] = mapped_column(String(32), default=Strategy.longest_waiting, nullable=False)
    team_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("teams.id", ondelete="SET NULL"), nullable=True
    )
    # Business hours: {"timezone": "Asia/Shanghai", "days": {"mon": [["09:00", "12:00"], ["13:30", "18:00"]]},
    # "holidays": ["2026-10-01"]}; no days at all means always open.
    hours: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict, nullable=False)
    off_hours_reply: Mapped[str] = mapped_column(Text, default="", nullable=False)
    # After this many seconds of waiting here, the conversation moves to the overflow queue.
    overflow_after_s: Mapped[int | None] = mapped_column(Integer, nullable=True)
    overflow_queue_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("routing_queues.id", ondelete="SET NULL"), nullable=True
    )
    max_length: Mapped[int | None] = mapped_column(Integer, nullable=True)
    full_reply: Mapped[str] = mapped_column(Text, default="", nullable=False)
    # 0 turns "last agent first" off; otherwise how recently the agent must have served the contact.
    last_agent_window_s: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    # Contacts matching this go ahead of the others: {"tags": [...], "attributes": {"tier": "gold"}}.
    vip_rule: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict, nullable=False)
    service_level_s: Mapped[int] = mapped_column(Integer, default=60, nullable=False)
    # Waiting customers hear their position on entry and then every this many seconds (0: only on entry).
    notice_interval_s: Mapped[int] = mapped_column(Integer, default=120, nullable=False)
    waiting_reply: Mapped[str] = mapped_column(Text, default="", nullable=False)


class QueueMember(Base):
    __tablename__ = "routing_queue_members"
    __table_args__ = (Index("ix_routing_queue_members_user", "user_id"),)

    queue_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("routing_queues.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    # Higher levels are offered work first; the strategy chooses among the best level available.
    skill_level: Mapped[int] = mapped_column(Integer, default=1, nullable=False)
    weight: Mapped[int] = mapped_column(Integer, default=1, nullable=False)  # proportional strategy
    assigned_count: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    last_assigned_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class RoutingAgent(Base):
    """Per-agent routing state; its row is the lock that keeps concurrent assignments within capacity."""

    __tablename__ = "routing_agents"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    capacity: Mapped[int | None] = mapped_column(Integer, nullable=True)  # None: the role's, else default
    last_assigned_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class RoleCapacity(Base):
    __tablename__ = "routing_role_capacities"

    role_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True)
    capacity: Mapped[int] = mapped_column(Integer, nullable=False)


class EntryRule(TimestampMixin, UUIDModel):
    """Puts conversations into a queue; rules are tried by ``position`` and the first match wins."""

    __tablename__ = "routing_entry_rules"
    __table_args__ = (Index("ix_routing_entry_rules_position", "position"),)

    name: Mapped[str] = mapped_column(String(120), nullable=False)
    position: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, nullable=False)
    queue_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("routing_queues.id", ondelete="CASCADE"))
    # {"account_id", "event": message|menu_click|qr_scene|any, "keywords": [...], "event_key",
    #  "tags": [...], "attributes": {...}}: every condition given must hold.
    conditions: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict, nullable=False)


class QueueEntry(Base):
    """One stay of a conversation in a queue; kept after it ends for the wallboard and reports."""

    __tablename__ = "routing_queue_entries"
    __table_args__ = (
        # A conversation waits in at most one queue at a time.
        Index(
            "uq_routing_queue_entries_waiting",
            "conversation_id",
            unique=True,
            sqlite_where=text("status = 'waiting'"),
            postgresql_where=text("status = 'waiting'"),
        ),
        # "Is this conversation waiting?" is asked with the status as a parameter, which the partial
        # index above cannot answer on SQLite: without this, each such lookup scans every entry ever made.
        Index("ix_routing_queue_entries_conversation", "conversation_id", "status"),
        Index("ix_routing_queue_entries_queue_status", "queue_id", "status", "priority", "waiting_since"),
        Index("ix_routing_queue_entries_entered", "entered_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    queue_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("routing_queues.id", ondelete="CASCADE"))
    conversation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    contact_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default=EntryStatus.waiting, nullable=False)
    priority: Mapped[int] = mapped_column(Integer, default=0, nullable=False)  # 1 for VIP
    entered_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    # When the customer started waiting, carried over an overflow so they keep their place.
    waiting_since: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    left_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    assigned_to_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    next_notice_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    note: Mapped[str] = mapped_column(Text, default="", nullable=False)
    actor_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    reason: Mapped[str] = mapped_column(String(32), default="", nullable=False)  # rule, transfer, flow…
