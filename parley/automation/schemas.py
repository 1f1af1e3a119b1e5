"""Validated shapes of automatic replies and rules (REST bodies and the stored JSON)."""

from __future__ import annotations

import functools
import uuid
from datetime import datetime, time
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from parley.channels.base import Article, Media, OutboundMessage, OutboundType


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Reply(_Model):
    """One message an automation sends: any type the channel can carry."""

    type: Literal["text", "image", "voice", "video", "news", "music"] = "text"
    text: str | None = Field(default=None, max_length=2048)
    media_id: str | None = Field(default=None, max_length=255)
    url: str | None = Field(default=None, max_length=2000)
    title: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=1000)
    articles: list[Article] | None = Field(default=None, max_length=8)

    @model_validator(mode="after")
    def _complete(self) -> Reply:
        if self.type == "text" and not (self.text or "").strip():
            raise ValueError("a text reply needs text")
        if self.type in ("image", "voice", "video") and not (self.media_id or self.url):
            raise ValueError(f"an {self.type} reply needs media_id or url")
        if self.type == "news" and not self.articles:
            raise ValueError("a news reply needs at least one article")
        if self.type == "music" and not self.url:
            raise ValueError("a music reply needs url")
        return self

    def outbound(
        self, *, to: str, idempotency_key: str, variables: dict[str, Any] | None = None
    ) -> OutboundMessage:
        text = self.text
        if text is not None and variables:
            text = render(text, variables)
        media = Media(media_id=self.media_id, url=self.url) if (self.media_id or self.url) else None
        return OutboundMessage(
            to=to,
            type=OutboundType(self.type),
            text=text,
            media=media if self.type != "music" else None,
            music_url=self.url if self.type == "music" else None,
            title=self.title,
            description=self.description,
            articles=self.articles or [],
            idempotency_key=idempotency_key,
        )


def render(template: str, variables: dict[str, Any]) -> str:
    """``{{name}}`` placeholders filled from variables; unknown names stay visible rather than vanish."""
    out = template
    for key, value in variables.items():
        out = out.replace("{{" + key + "}}", "" if value is None else str(value))
    return out


@functools.lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


class Schedule(_Model):
    """When a rule is in effect: days of the week (0 = Monday) and a daily window, in a time zone."""

    timezone: str = "Asia/Shanghai"
    days: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4, 5, 6])
    start: time = time(0, 0)
    end: time = time(23, 59, 59)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("days")
    @classmethod
    def _days(cls, value: list[int]) -> list[int]:
        if not value or any(d < 0 or d > 6 for d in value):
            raise ValueError("days are 0 (Monday) to 6 (Sunday), at least one")
        return sorted(set(value))

    def active(self, at: datetime) -> bool:
        local = at.astimezone(_zone(self.timezone))
        now = local.time().replace(tzinfo=None)
        if self.start <= self.end:
            return local.weekday() in self.days and self.start <= now <= self.end
        # An overnight window (22:00–06:00) belongs to the day it starts on.
        if now >= self.start:
            return local.weekday() in self.days
        return (local.weekday() - 1) % 7 in self.days and now <= self.end


class KeywordSpec(_Model):
    text: str = Field(min_length=1, max_length=200)
    match: Literal["exact", "contains", "fuzzy"] = "contains"


class RuleIn(_Model):
    account_id: uuid.UUID
    name: str = Field(min_length=1, max_length=200)
    trigger: Literal["keyword", "follow", "scan"] = "keyword"
    keywords: list[KeywordSpec] = Field(default_factory=list, max_length=200)
    scene: str | None = Field(default=None, max_length=128)
    replies: list[Reply] = Field(default_factory=list, max_length=20)
    flow_id: uuid.UUID | None = None
    schedule: Schedule | None = None
    priority: int = 0
    is_active: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> RuleIn:
        if self.trigger == "keyword" and not self.keywords:
            raise ValueError("a keyword rule needs at least one keyword")
        if self.trigger != "keyword" and self.keywords:
            raise ValueError("only keyword rules have keywords")
        if self.trigger != "scan" and self.scene:
            raise ValueError("only scan rules have a scene")
        if not self.replies and self.flow_id is None:
            raise ValueError("a rule needs a reply or a flow")
        return self


class RuleRead(RuleIn):
    model_config = ConfigDict(from_attributes=True, extra="ignore")

    id: uuid.UUID
    created_at: datetime
    updated_at: datetime


class UnmatchedGroup(BaseModel):
    sample: str
    count: int
    texts: list[str]
    last_at: datetime
