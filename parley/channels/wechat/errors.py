"""The platform's errcodes (PROTOCOLS.md 1.7.2) mapped to Parley's four send outcomes.

Decisions where the dossier leaves room:

* 45047 (customer-service allowance of the window used up) is *window closed*,
  not *quota exceeded*: it does not reset at a clock time but at the user's next
  interaction, and until then only a template can reach the user.
* 45009 resets at the next midnight Beijing time (UTC+8), the platform's day.
* 40001/40014/42001 are handled by the client (refresh once, retry once); when they
  come back after that retry they are permanent: the credentials are wrong.
* An errcode not in the table is permanent, so an unknown failure can't loop.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from typing import Any

from parley.channels.base import (
    ChannelError,
    ChannelPermanentError,
    ChannelQuotaExceededError,
    ChannelRetriableError,
    ChannelWindowClosedError,
)

BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")

TOKEN_ERRCODES = frozenset({40001, 40014, 42001})


class Outcome(StrEnum):
    retriable = "retriable"
    quota = "quota"
    window = "window"
    permanent = "permanent"


# errcode → (outcome, retry-after seconds for retriable ones, what it means)
ERRCODES: dict[int, tuple[Outcome, float | None, str]] = {
    -1: (Outcome.retriable, 2.0, "system busy"),
    40001: (Outcome.permanent, None, "access_token invalid or not latest (after one refresh)"),
    40003: (Outcome.permanent, None, "invalid openid: not a follower of this account"),
    40013: (Outcome.permanent, None, "invalid appid"),
    40014: (Outcome.permanent, None, "invalid access_token (after one refresh)"),
    40029: (Outcome.permanent, None, "invalid OAuth code"),
    40125: (Outcome.permanent, None, "invalid appsecret"),
    40163: (Outcome.permanent, None, "OAuth code already used"),
    40164: (Outcome.permanent, None, "caller IP not in the allow-list"),
    42001: (Outcome.permanent, None, "access_token expired (after one refresh)"),
    43004: (Outcome.permanent, None, "user has unfollowed"),
    43019: (Outcome.permanent, None, "user is in the account's blacklist"),
    45009: (Outcome.quota, None, "daily API quota exhausted"),
    45011: (Outcome.retriable, 60.0, "per-minute API throttle"),
    45015: (Outcome.window, None, "outside the 48-hour customer-service window"),
    45028: (Outcome.permanent, None, "no mass-send quota"),
    45047: (Outcome.window, None, "customer-service message allowance of the window used up"),
    46003: (Outcome.permanent, None, "menu does not exist"),
    47003: (Outcome.permanent, None, "template data field violates its type rule"),
    48001: (Outcome.permanent, None, "API unauthorized for this account"),
}


def next_beijing_midnight(now: datetime | None = None) -> datetime:
    """When the platform's daily quotas reset, in UTC."""
    local = (now or datetime.now(UTC)).astimezone(BEIJING)
    midnight = datetime(local.year, local.month, local.day, tzinfo=BEIJING) + timedelta(days=1)
    return midnight.astimezone(UTC)


def outcome_of(errcode: int) -> Outcome:
    return ERRCODES.get(errcode, (Outcome.permanent, None, ""))[0]


def error_for(errcode: int, errmsg: str, raw: Any = None, *, now: datetime | None = None) -> ChannelError:
    """The outcome error for a non-zero errcode."""
    outcome, retry_after, meaning = ERRCODES.get(errcode, (Outcome.permanent, None, "unknown errcode"))
    message = f"WeChat errcode {errcode}: {errmsg}" + (f" ({meaning})" if meaning else "")
    if outcome is Outcome.retriable:
        return ChannelRetriableError(message, retry_after_s=retry_after, code=errcode, raw=raw)
    if outcome is Outcome.quota:
        return ChannelQuotaExceededError(message, reset_at=next_beijing_midnight(now), code=errcode, raw=raw)
    if outcome is Outcome.window:
        return ChannelWindowClosedError(message, code=errcode, raw=raw)
    return ChannelPermanentError(message, code=errcode, raw=raw)
