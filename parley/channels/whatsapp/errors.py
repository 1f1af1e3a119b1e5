"""Graph API errors → the four send outcomes of :mod:`parley.channels.base`.

One table, from PROTOCOLS.md 2.6, decides what the delivery layer does with a
failed send. Decisions the dossier leaves open:

* **131048 (spam rate limit)** is a quota, not a failure: Meta documents no
  dedicated code for the portfolio *messaging limit* (2.7), and 131048 is the
  error of "restrictions on how many messages can be sent from this number";
  the campaign has to stop and resume later, so it maps to
  ``ChannelQuotaExceededError`` with ``reset_at`` one moving window (24 h) ahead.
  The simulator uses the same code for its tier limit.
* **131049 (per-user marketing cap)** concerns one recipient, so it must not
  pause the whole account the way a quota would: it is permanent for this send.
* **131052 / 131053 (media download / upload)** are retried: the dossier says
  "retry or re-upload" and a re-upload is a new send anyway.
* A code missing from the table is retriable when Graph flags it
  ``is_transient`` or the HTTP status is 5xx / 429, else permanent: a retry of
  an unknown 4xx would repeat the same mistake.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import httpx

from parley.channels.base import (
    ChannelError,
    ChannelPermanentError,
    ChannelQuotaExceededError,
    ChannelRetriableError,
    ChannelWindowClosedError,
)


class Outcome(StrEnum):
    retriable = "retriable"
    quota = "quota"
    window = "window"
    permanent = "permanent"


@dataclass(frozen=True)
class ErrorRule:
    outcome: Outcome
    meaning: str
    retry_after_s: float | None = None  # retriable: how long to wait before the next try
    reset_after: timedelta | None = None  # quota: when sending may resume


_DAY = timedelta(hours=24)

ERROR_TABLE: dict[int, ErrorRule] = {
    # window
    131047: ErrorRule(Outcome.window, "more than 24 hours since the customer last wrote; send a template"),
    # throttles: back off and try again
    130429: ErrorRule(Outcome.retriable, "throughput limit of this phone number hit", retry_after_s=1.0),
    131056: ErrorRule(
        Outcome.retriable, "pair rate limit: too many messages to this user", retry_after_s=6.0
    ),
    80007: ErrorRule(Outcome.retriable, "WhatsApp Business Account rate limit hit", retry_after_s=60.0),
    4: ErrorRule(Outcome.retriable, "application API call rate limit hit", retry_after_s=60.0),
    # transient platform trouble
    131000: ErrorRule(Outcome.retriable, "unknown error on WhatsApp's side"),
    131016: ErrorRule(Outcome.retriable, "WhatsApp service unavailable"),
    135000: ErrorRule(Outcome.retriable, "generic WhatsApp error"),
    131052: ErrorRule(Outcome.retriable, "media download error"),
    131053: ErrorRule(Outcome.retriable, "media upload error"),
    # quota
    131048: ErrorRule(
        Outcome.quota, "spam / messaging limit hit: stop sending and resume later", reset_after=_DAY
    ),
    # permanent: this send will never succeed as it is
    131026: ErrorRule(
        Outcome.permanent, "message undeliverable: not on WhatsApp, old client or terms not accepted"
    ),
    131049: ErrorRule(
        Outcome.permanent, "not delivered to maintain a healthy ecosystem (per-user marketing cap)"
    ),
    131050: ErrorRule(Outcome.permanent, "the user stopped marketing messages"),
    131051: ErrorRule(Outcome.permanent, "unsupported message type"),
    131062: ErrorRule(
        Outcome.permanent, "a business-scoped user id can't be the recipient of this message type"
    ),
    131008: ErrorRule(Outcome.permanent, "a required parameter is missing"),
    131009: ErrorRule(Outcome.permanent, "a parameter value is not valid"),
    132000: ErrorRule(Outcome.permanent, "template parameter count mismatch"),
    132001: ErrorRule(Outcome.permanent, "template does not exist in this language or is not approved"),
    132012: ErrorRule(Outcome.permanent, "template parameter format mismatch"),
    132015: ErrorRule(Outcome.permanent, "template is paused for low quality"),
    132016: ErrorRule(Outcome.permanent, "template is disabled"),
    130472: ErrorRule(Outcome.permanent, "the user's number is part of a Meta experiment"),
    100: ErrorRule(Outcome.permanent, "invalid parameter"),
    190: ErrorRule(
        Outcome.permanent,
        "access token expired or invalid: put a new system-user token in the channel settings",
    ),
    0: ErrorRule(Outcome.permanent, "authentication failed"),
    3: ErrorRule(Outcome.permanent, "the app lacks the capability for this call"),
    10: ErrorRule(Outcome.permanent, "permission denied"),
    368: ErrorRule(Outcome.permanent, "the account is temporarily blocked for policy violations"),
    131031: ErrorRule(Outcome.permanent, "the business account is locked"),
    130497: ErrorRule(Outcome.permanent, "the business can't message users in this country"),
}


def rule_for(code: int | None, *, http_status: int | None = None, is_transient: bool = False) -> ErrorRule:
    """The rule for a Graph error code, falling back on the transient flag and the HTTP status."""
    if code is not None:
        if code in ERROR_TABLE:
            return ERROR_TABLE[code]
        if 200 <= code <= 299:
            return ErrorRule(Outcome.permanent, "permission denied")
    if is_transient or (http_status is not None and (http_status >= 500 or http_status == 429)):
        return ErrorRule(Outcome.retriable, "temporary error")
    return ErrorRule(Outcome.permanent, "request rejected")


def _retry_after_header(headers: Mapping[str, str] | None) -> float | None:
    if headers is None:
        return None
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def to_channel_error(
    *,
    code: int | None,
    message: str,
    http_status: int | None = None,
    is_transient: bool = False,
    details: str | None = None,
    raw: Any = None,
    headers: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> ChannelError:
    """Builds the outcome error for one Graph error (synchronous response or ``failed`` status)."""
    rule = rule_for(code, http_status=http_status, is_transient=is_transient)
    text = f"WhatsApp error {code}: {rule.meaning}" if code is not None else f"WhatsApp: {rule.meaning}"
    if message:
        text += f" ({message}{'; ' + details if details else ''})"
    if rule.outcome is Outcome.retriable:
        retry_after = _retry_after_header(headers)
        return ChannelRetriableError(
            text,
            retry_after_s=retry_after if retry_after is not None else rule.retry_after_s,
            code=code,
            raw=raw,
        )
    if rule.outcome is Outcome.quota:
        reset_at = (now or datetime.now(UTC)) + (rule.reset_after or _DAY)
        return ChannelQuotaExceededError(text, reset_at=reset_at, code=code, raw=raw)
    if rule.outcome is Outcome.window:
        return ChannelWindowClosedError(text, code=code, raw=raw)
    return ChannelPermanentError(text, code=code, raw=raw)


def from_response(response: httpx.Response) -> ChannelError:
    """Turns a non-2xx Graph response into the outcome error, whatever its body looks like."""
    return from_http(response.status_code, response.headers, response.content)


def from_http(status: int, headers: Mapping[str, str], content: bytes) -> ChannelError:
    """The same from the parts of a response, whichever HTTP client received it."""
    body: Any = None
    try:
        body = json.loads(content)
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        # Load balancers answer 502/503 with HTML; that says nothing about the request.
        return to_channel_error(
            code=None,
            message=f"HTTP {status} without a Graph error body",
            http_status=status,
            raw=content[:2000].decode("utf-8", "replace"),
            headers=headers,
        )
    code = error.get("code")
    error_data = error.get("error_data")
    details = error_data.get("details") if isinstance(error_data, dict) else None
    return to_channel_error(
        code=code if isinstance(code, int) else None,
        message=str(error.get("message") or ""),
        http_status=status,
        is_transient=error.get("is_transient") is True,
        details=details if isinstance(details, str) else None,
        raw=body,
        headers=headers,
    )


def from_network(exc: BaseException) -> ChannelRetriableError:
    """A send that never got a Graph answer (connect error, timeout) may be retried."""
    return ChannelRetriableError(f"WhatsApp API unreachable: {type(exc).__name__}: {exc}", raw=str(exc))
