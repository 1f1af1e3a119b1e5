"""The 24-hour customer-service window, checked before a send is tried (PROTOCOLS.md 2.4).

``WhatsAppAdapter.send`` can't apply this rule: it doesn't know when the
customer last wrote. The inbox (when an agent replies) and the delivery layer
(before calling ``send``) call :func:`check_can_send` with the conversation's
``last_inbound_at`` for this (business number, customer) pair. The platform
still has the last word: a send that races the window closing comes back as
131047, which ``errors.py`` maps to the same ``ChannelWindowClosedError``.

The window is measured from any message the customer sent (reactions and
button taps count, as they do on WhatsApp); ``last_inbound_at`` must be the
time the customer sent it (the webhook ``timestamp``), not when Parley stored it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from parley.channels.base import ChannelWindowClosedError, OutboundType
from parley.channels.whatsapp.config import CUSTOMER_SERVICE_WINDOW_HOURS

WINDOW = timedelta(hours=CUSTOMER_SERVICE_WINDOW_HOURS)
RE_ENGAGEMENT_CODE = 131047

# Only an approved template may open a conversation or re-engage after the window.
ALWAYS_ALLOWED = frozenset({OutboundType.template.value})


def window_closes_at(last_inbound_at: datetime | None) -> datetime | None:
    """When free-form replies stop being allowed; ``None`` if the customer never wrote."""
    if last_inbound_at is None:
        return None
    _require_aware(last_inbound_at, "last_inbound_at")
    return last_inbound_at + WINDOW


def is_window_open(last_inbound_at: datetime | None, now: datetime) -> bool:
    _require_aware(now, "now")
    closes_at = window_closes_at(last_inbound_at)
    return closes_at is not None and now < closes_at


def check_can_send(message_type: OutboundType | str, last_inbound_at: datetime | None, now: datetime) -> None:
    """Raises ChannelWindowClosedError unless WhatsApp would accept this message type now.

    Args:
        message_type: the outbound type; templates are always allowed.
        last_inbound_at: when the customer last sent a message to this business number (aware).
        now: the current time (aware).
    """
    kind = OutboundType(message_type).value
    if kind in ALWAYS_ALLOWED:
        return
    if is_window_open(last_inbound_at, now):
        return
    if last_inbound_at is None:
        reason = "the customer has never written to this number"
    else:
        reason = f"the customer last wrote at {last_inbound_at.isoformat()}, more than 24 hours ago"
    raise ChannelWindowClosedError(
        f"WhatsApp customer-service window is closed ({reason}): only an approved template may be sent, "
        f"not a {kind} message",
        code=RE_ENGAGEMENT_CODE,
    )


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got {value!r}")
