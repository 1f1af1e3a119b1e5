"""Choosing an agent for one conversation: pure functions over the agents that are free right now."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction

from parley.models.routing import Strategy

NEVER = datetime.min.replace(tzinfo=UTC)


@dataclass
class Agent:
    """An online agent as one dispatch pass sees it; ``load`` grows as the pass assigns."""

    user_id: uuid.UUID
    name: str
    capacity: int
    load: int
    last_assigned_at: datetime | None
    online_since: datetime | None

    @property
    def free(self) -> bool:
        return self.load < self.capacity

    @property
    def idle_since(self) -> datetime:
        """Since when the agent has been waiting for new work: last assignment, or coming online."""
        return max(self.last_assigned_at or NEVER, self.online_since or NEVER)


@dataclass
class Membership:
    agent: Agent
    skill_level: int
    weight: int
    assigned_count: int
    last_assigned_at: datetime | None


def _tie(m: Membership) -> tuple[str, str]:
    return (m.agent.name, str(m.agent.user_id))


def choose(strategy: str, members: list[Membership]) -> Membership | None:
    """The member that gets the next conversation, among free ones of the highest skill level present."""
    free = [m for m in members if m.agent.free]
    if not free:
        return None
    top = max(m.skill_level for m in free)
    pool = [m for m in free if m.skill_level == top]
    if strategy == Strategy.round_robin:
        return min(pool, key=lambda m: (m.last_assigned_at or NEVER, *_tie(m)))
    if strategy == Strategy.least_busy:
        return min(pool, key=lambda m: (m.agent.load, m.agent.idle_since, *_tie(m)))
    if strategy == Strategy.proportional:
        # Smooth weighted fairness: whoever is furthest below their share goes next.
        return min(
            pool,
            key=lambda m: (Fraction(m.assigned_count + 1, max(m.weight, 1)), -m.weight, *_tie(m)),
        )
    return min(pool, key=lambda m: (m.agent.idle_since, *_tie(m)))
