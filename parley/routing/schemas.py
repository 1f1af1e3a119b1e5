"""Request and response shapes of the routing API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from parley.models.routing import Strategy
from parley.routing.hours import BusinessHours
from parley.routing.rules import ContactCondition, RuleConditions


class QueueWrite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=120)
    description: str = ""
    is_active: bool = True
    strategy: Strategy = Strategy.longest_waiting
    team_id: uuid.UUID | None = None
    hours: BusinessHours = Field(default_factory=BusinessHours)
    off_hours_reply: str = Field(default="", max_length=2000)
    overflow_after_s: int | None = Field(default=None, ge=1)
    overflow_queue_id: uuid.UUID | None = None
    max_length: int | None = Field(default=None, ge=0)
    full_reply: str = Field(default="", max_length=2000)
    last_agent_window_s: int = Field(default=0, ge=0)
    vip_rule: ContactCondition = Field(default_factory=ContactCondition)
    service_level_s: int = Field(default=60, ge=1)
    notice_interval_s: int = Field(default=120, ge=0)
    waiting_reply: str = Field(default="", max_length=2000)


class QueueRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    description: str
    is_active: bool
    strategy: str
    team_id: uuid.UUID | None
    hours: dict[str, Any]
    off_hours_reply: str
    overflow_after_s: int | None
    overflow_queue_id: uuid.UUID | None
    max_length: int | None
    full_reply: str
    last_agent_window_s: int
    vip_rule: dict[str, Any]
    service_level_s: int
    notice_interval_s: int
    waiting_reply: str


class MemberWrite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: uuid.UUID
    skill_level: int = Field(default=1, ge=1, le=10)
    weight: int = Field(default=1, ge=1, le=100)


class MemberRead(BaseModel):
    user_id: uuid.UUID
    name: str
    presence: str
    skill_level: int
    weight: int
    assigned_count: int


class CapacityWrite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    capacity: int | None = Field(default=None, ge=0, le=100)


class RuleWrite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=120)
    queue_id: uuid.UUID
    is_active: bool = True
    conditions: RuleConditions = Field(default_factory=RuleConditions)


class RuleRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    position: int
    queue_id: uuid.UUID
    is_active: bool
    conditions: dict[str, Any]


class RuleOrder(BaseModel):
    ids: list[uuid.UUID]


class Transfer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    queue_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None
    note: str | None = Field(default=None, max_length=2000)


class QueueBoard(BaseModel):
    id: uuid.UUID
    name: str
    open: bool
    waiting: int
    vip_waiting: int
    longest_wait_s: float
    agents: dict[str, int]
    load: int
    capacity: int
    answered_today: int
    within_target_today: int
    abandoned_today: int
    service_level: float | None


class AgentBoard(BaseModel):
    id: uuid.UUID
    name: str
    presence: str
    load: int
    capacity: int


class Wallboard(BaseModel):
    at: datetime
    queues: list[QueueBoard]
    agents: list[AgentBoard]
