"""Building routing scenarios: agents with presence, queues, customers with conversations."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.contacts.tags import apply_tags
from parley.kit.types import utcnow
from parley.models import (
    ChannelAccount,
    Contact,
    ContactIdentity,
    Conversation,
    Direction,
    EntryStatus,
    Message,
    QueueEntry,
    RoutingAgent,
    RoutingQueue,
    User,
)
from parley.routing import admin
from parley.routing.schemas import MemberWrite, QueueWrite
from tests.fixtures.factories import create_channel_account, create_user

T0 = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)  # a Monday, 10:00 in Shanghai


@dataclass
class World:
    session: AsyncSession
    account: ChannelAccount
    agents: dict[str, User] = field(default_factory=dict)
    customers: dict[str, Conversation] = field(default_factory=dict)

    async def agent(
        self,
        name: str,
        *,
        online: bool = True,
        capacity: int | None = None,
        online_since: datetime | None = None,
    ) -> User:
        user = await create_user(self.session, email=f"{name.lower()}@example.com", name=name)
        user.presence = "online" if online else "offline"
        user.presence_changed_at = online_since or T0 - timedelta(hours=1)
        self.session.add(RoutingAgent(user_id=user.id, capacity=capacity))
        await self.session.commit()
        self.agents[name] = user
        return user

    async def queue(self, name: str, members: dict[str, int] | None = None, **options: Any) -> RoutingQueue:
        queue = await admin.create_queue(self.session, QueueWrite(name=name, **options))
        for agent_name, skill in (members or {}).items():
            await admin.set_member(
                self.session,
                None,
                queue.id,
                MemberWrite(user_id=self.agents[agent_name].id, skill_level=skill),
            )
        await self.session.commit()
        return queue

    async def customer(self, name: str, *, attributes: dict[str, Any] | None = None) -> Conversation:
        attributes = dict(attributes or {})
        tags = attributes.pop("tags", [])
        contact = Contact(id=uuid.uuid4(), display_name=name, attributes=attributes)
        self.session.add(contact)
        await self.session.flush()
        await apply_tags(self.session, [contact.id], tags, "agent")
        self.session.add(
            ContactIdentity(
                contact_id=contact.id,
                account_id=self.account.id,
                kind="wechat_openid",
                scope=str(self.account.id),
                value=f"openid-{name}",
            )
        )
        conversation = Conversation(
            id=uuid.uuid4(),
            contact_id=contact.id,
            account_id=self.account.id,
            status="open",
            # The reply window runs on the real clock; the customer wrote just now.
            last_inbound_at=utcnow(),
            last_message_at=utcnow(),
        )
        self.session.add(conversation)
        await self.session.commit()
        self.customers[name] = conversation
        return conversation

    async def assignee(self, customer: str) -> str | None:
        assignee_id = await self.session.scalar(
            select(Conversation.assignee_id)
            .where(Conversation.id == self.customers[customer].id)
            .execution_options(populate_existing=True)
        )
        return next((n for n, u in self.agents.items() if u.id == assignee_id), None)

    async def texts_to(self, customer: str) -> list[str]:
        rows = await self.session.scalars(
            select(Message.text)
            .where(
                Message.conversation_id == self.customers[customer].id,
                Message.direction == Direction.outbound,
                Message.kind == "message",
            )
            .order_by(Message.id)
        )
        return [t or "" for t in rows.all()]

    async def waiting_in(self, queue: RoutingQueue) -> list[str]:
        rows = await self.session.scalars(
            select(QueueEntry.conversation_id)
            .where(QueueEntry.queue_id == queue.id, QueueEntry.status == EntryStatus.waiting)
            .order_by(QueueEntry.priority.desc(), QueueEntry.waiting_since)
        )
        ids = list(rows.all())
        return [n for i in ids for n, c in self.customers.items() if c.id == i]


async def world(session: AsyncSession) -> World:
    return World(session=session, account=await create_channel_account(session))
