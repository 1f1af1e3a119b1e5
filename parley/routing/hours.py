"""Business hours: weekly intervals (split shifts, overnight shifts) in a time zone, with holidays."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, field_validator, model_validator

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _parse_time(value: str) -> time | None:
    """HH:MM; "24:00" is the end of the day (returned as None)."""
    if value == "24:00":
        return None
    hours, _, minutes = value.partition(":")
    return time(int(hours), int(minutes))


class BusinessHours(BaseModel):
    """``days`` maps mon..sun to [start, end] pairs; no days at all means always open.

    An interval whose end is before its start runs past midnight into the next day (night shift).
    """

    timezone: str = "UTC"
    days: dict[str, list[tuple[str, str]]] = Field(default_factory=dict)
    holidays: list[date] = Field(default_factory=list)

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
    def _days(cls, value: dict[str, list[tuple[str, str]]]) -> dict[str, list[tuple[str, str]]]:
        for day, intervals in value.items():
            if day not in DAYS:
                raise ValueError(f"unknown day {day!r}; use {', '.join(DAYS)}")
            for start, end in intervals:
                for part in (start, end):
                    try:
                        parsed_ok = len(part) == 5 and part[2] == ":"
                        hours, minutes = int(part[:2]), int(part[3:])
                    except ValueError:
                        parsed_ok = False
                    if (
                        not parsed_ok
                        or not (0 <= hours <= 24 and 0 <= minutes < 60)
                        or (hours == 24 and minutes)
                    ):
                        raise ValueError(f"{part!r} is not a time of day (HH:MM)")
                if start == end:
                    raise ValueError(f"the interval {start}-{end} on {day} is empty")
        return value

    @model_validator(mode="after")
    def _sorted(self) -> BusinessHours:
        self.holidays = sorted(set(self.holidays))
        return self

    @property
    def always_open(self) -> bool:
        return not any(self.days.values())

    def is_open(self, at: datetime) -> bool:
        if self.always_open:
            return True
        local = at.astimezone(ZoneInfo(self.timezone))
        today = local.date()
        now = local.time()
        yesterday = today - timedelta(days=1)
        for start_s, end_s in self.days.get(DAYS[today.weekday()], []):
            if today in self.holidays:
                break
            start, end = _parse_time(start_s) or time(0), _parse_time(end_s)
            if end is None or end > start:
                if start <= now and (end is None or now < end):
                    return True
            elif now >= start:  # overnight, evening part
                return True
        if yesterday not in self.holidays:
            for start_s, end_s in self.days.get(DAYS[yesterday.weekday()], []):
                start_y, end_y = _parse_time(start_s) or time(0), _parse_time(end_s)
                if end_y is not None and end_y < start_y and now < end_y:
                    return True  # overnight, morning part of yesterday's shift
        return False


def hours_of(raw: dict[str, Any] | None) -> BusinessHours:
    return BusinessHours.model_validate(raw or {})
