"""Reply windows: when an agent may write freely, and when only a template will do.

WeChat: customer-service messages within 48 hours of the customer's last
message, at most 5 of them per window (PROTOCOLS.md 1.7.3; 45015 / 45047).
WhatsApp: anything within 24 hours, only approved templates outside (2.4).
The platform still has the last word; its refusal maps to the same error.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from parley.channels.base import ChannelType, ChannelWindowClosedError, OutboundType

WINDOW_HOURS = {ChannelType.wechat: 48, ChannelType.whatsapp: 24}
# Sends allowed per window after a customer message (None: unlimited).
ALLOWANCE = {ChannelType.wechat: 5, ChannelType.whatsapp: None}


@dataclass(frozen=True)
class ReplyWindow:
    open: bool
    closes_at: datetime | None
    remaining: int | None
    reason: str

    def as_dict(self) -> dict[str, object]:
        return {
            "open": self.open,
            "closes_at": self.closes_at,
            "remaining": self.remaining,
            "reason": self.reason,
        }


def reply_window(
    channel_type: str, *, last_inbound_at: datetime | None, sent_since_inbound: int, now: datetime
) -> ReplyWindow:
    kind = ChannelType(channel_type)
    hours = WINDOW_HOURS.get(kind)
    if hours is None:  # web chat and email have no platform window
        return ReplyWindow(True, None, None, "")
    if last_inbound_at is None:
        return ReplyWindow(False, None, 0, "The customer has not written yet: send an approved template.")
    closes_at = last_inbound_at + timedelta(hours=hours)
    if now >= closes_at:
        return ReplyWindow(
            False,
            closes_at,
            0,
            f"More than {hours} hours since the customer last wrote: send an approved template.",
        )
    allowance = ALLOWANCE.get(kind)
    if allowance is not None:
        remaining = max(allowance - sent_since_inbound, 0)
        if remaining == 0:
            return ReplyWindow(
                False,
                closes_at,
                0,
                f"The {allowance} replies allowed until the customer writes again are used up: send an approved template.",
            )
        return ReplyWindow(True, closes_at, remaining, "")
    return ReplyWindow(True, closes_at, None, "")


def check_reply_allowed(window: ReplyWindow, message_type: OutboundType | str) -> None:
    """Raises ChannelWindowClosedError unless this message may go out now; templates always may."""
    if OutboundType(message_type) == OutboundType.template or window.open:
        return
    raise ChannelWindowClosedError(window.reason)
