"""How an automatic answer leaves: in the webhook's own HTTP response when the platform allows it, else the outbox."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from parley.automation.schemas import Reply
from parley.channels.base import OutboundMessage
from parley.delivery import service as delivery
from parley.kit.types import utcnow
from parley.models import ChannelAccount, Conversation, Direction, Message, MessageStatus, Priority

# WeChat waits 5 s for the answer (PROTOCOLS.md 1.6); past this point the reply goes
# through the customer-service API instead, so a slow moment never loses it.
PASSIVE_BUDGET_S = 3.5


@dataclass
class Responder:
    """The one passive-reply slot of a webhook request, and the time it must be used by."""

    allowed: bool = False
    deadline: float = 0.0
    message: OutboundMessage | None = None
    sent: list[int] = field(default_factory=list)

    @classmethod
    def for_webhook(cls, passive_reply: bool) -> Responder:
        return cls(allowed=passive_reply, deadline=time.monotonic() + PASSIVE_BUDGET_S)

    def can_take(self) -> bool:
        return self.allowed and self.message is None and time.monotonic() < self.deadline


NO_PASSIVE = Responder()


async def send_reply(
    session: AsyncSession,
    *,
    account: ChannelAccount,
    to: str,
    reply: Reply,
    conversation_id: uuid.UUID | None,
    contact_id: uuid.UUID | None,
    responder: Responder,
    key: str,
    variables: dict[str, Any] | None = None,
) -> Message:
    """Writes the outbound message; it rides in the webhook answer if the slot is free, else is queued.

    ``key`` makes the message idempotent: the same automation step never sends twice.
    """
    message = reply.outbound(to=to, idempotency_key=key, variables=variables)
    if responder.can_take() and _passive_capable(reply):
        now = utcnow()
        row = Message(
            account_id=account.id,
            conversation_id=conversation_id,
            contact_id=contact_id,
            direction=Direction.outbound.value,
            kind="message",
            type=message.type.value,
            peer_id=to,
            text=message.text,
            content={**message.model_dump(mode="json", exclude_none=True), "passive": True},
            # Handed to the platform in the HTTP answer: there is no later send to wait for.
            status=MessageStatus.sent.value,
            priority=int(Priority.automated),
            idempotency_key=key,
            created_at=now,
            sent_at=now,
        )
        session.add(row)
        await session.flush()
        responder.message = message
        responder.sent.append(row.id)
    else:
        row = await delivery.enqueue(
            session,
            account=account,
            message=message,
            priority=Priority.automated,
            conversation_id=conversation_id,
            contact_id=contact_id,
        )
    if conversation_id is not None:
        conversation = await session.get(Conversation, conversation_id)
        if conversation is not None:
            conversation.last_message_at = row.created_at
            conversation.last_message_preview = (message.text or f"[{message.type.value}]")[:200]
    return row


def _passive_capable(reply: Reply) -> bool:
    # A passive reply carries a MediaId, never a URL the platform would have to fetch.
    if reply.type in ("image", "voice", "video"):
        return bool(reply.media_id)
    if reply.type == "news":
        # A passive news reply to a message carries one article (PROTOCOLS.md 1.6).
        return len(reply.articles or []) == 1
    return reply.type == "text"
