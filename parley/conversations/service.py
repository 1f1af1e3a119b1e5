"""The agent's side of conversations: lists, the conversation view, replies, notes, assignment and status."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from parley.auth.permissions import Permission
from parley.auth.service import Principal, audit
from parley.channels.base import ChannelWindowClosedError, OutboundMessage, OutboundType
from parley.context import Context
from parley.conversations.pipeline import conversation_summary, message_summary, publish_conversation_updated
from parley.conversations.schemas import (
    AssignUpdate,
    ContactBrief,
    ConversationDetail,
    ConversationRead,
    IdentityRead,
    MessageRead,
    ReplyCreate,
    StatusUpdate,
    WindowRead,
)
from parley.conversations.window import ReplyWindow, check_reply_allowed, reply_window
from parley.exceptions import Conflict, Forbidden, NotFound, UnprocessableEntity
from parley.kit.types import utcnow
from parley.models import (
    ChannelAccount,
    Contact,
    ContactIdentity,
    ContactReason,
    Conversation,
    ConversationStatus,
    Direction,
    Message,
    Priority,
    Team,
    User,
    team_members,
)
from parley.realtime.service import publish_on_commit

AUDIENCE = {"permission": Permission.conversations_read.value}


def _read(
    conversation: Conversation, contact: Contact, account: ChannelAccount, assignee: User | None
) -> ConversationRead:
    return ConversationRead(
        id=conversation.id,
        account_id=account.id,
        account_name=account.name,
        channel=account.type,
        contact_id=contact.id,
        contact_name=contact.display_name or "",
        status=conversation.status,
        snoozed_until=conversation.snoozed_until,
        assignee_id=conversation.assignee_id,
        assignee_name=assignee.name if assignee else None,
        team_id=conversation.team_id,
        priority=conversation.priority,
        unread_count=conversation.unread_count,
        last_message_at=conversation.last_message_at,
        last_inbound_at=conversation.last_inbound_at,
        last_message_preview=conversation.last_message_preview,
        contact_reason_id=conversation.contact_reason_id,
        created_at=conversation.created_at,
    )


class ConversationService:
    def _base(self) -> Any:
        return (
            select(Conversation, Contact, ChannelAccount, User)
            .join(Contact, Contact.id == Conversation.contact_id)
            .join(ChannelAccount, ChannelAccount.id == Conversation.account_id)
            .outerjoin(User, User.id == Conversation.assignee_id)
        )

    async def search(
        self,
        session: AsyncSession,
        *,
        principal: Principal,
        view: str = "all",
        status: str | None = "open",
        channel: str | None = None,
        account_id: uuid.UUID | None = None,
        query: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[ConversationRead], int]:
        """The conversation list. ``view``: mine, unassigned, team (my teams') or all."""
        conditions: list[Any] = []
        if view == "mine":
            conditions.append(Conversation.assignee_id == principal.user.id)
        elif view == "unassigned":
            conditions.append(Conversation.assignee_id.is_(None))
        elif view == "team":
            my_teams = select(team_members.c.team_id).where(team_members.c.user_id == principal.user.id)
            teammates = select(team_members.c.user_id).where(team_members.c.team_id.in_(my_teams))
            conditions.append(
                or_(Conversation.team_id.in_(my_teams), Conversation.assignee_id.in_(teammates))
            )
        if status:
            conditions.append(Conversation.status == status)
        if channel:
            conditions.append(ChannelAccount.type == channel)
        if account_id:
            conditions.append(Conversation.account_id == account_id)
        if query:
            like = f"%{query.lower()}%"
            conditions.append(
                or_(
                    func.lower(Contact.display_name).like(like),
                    func.lower(Conversation.last_message_preview).like(like),
                )
            )
        where = and_(*conditions) if conditions else None
        stmt = self._base()
        count = (
            select(func.count())
            .select_from(Conversation)
            .join(Contact, Contact.id == Conversation.contact_id)
            .join(ChannelAccount, ChannelAccount.id == Conversation.account_id)
        )
        if where is not None:
            stmt, count = stmt.where(where), count.where(where)
        stmt = (
            stmt.order_by(Conversation.priority.desc(), Conversation.last_message_at.desc())
            .limit(limit)
            .offset(offset)
        )
        rows = (await session.execute(stmt)).all()
        return [_read(*row) for row in rows], int(await session.scalar(count) or 0)

    async def _load(
        self, session: AsyncSession, conversation_id: uuid.UUID
    ) -> tuple[Conversation, Contact, ChannelAccount, User | None]:
        row = (await session.execute(self._base().where(Conversation.id == conversation_id))).first()
        if row is None:
            raise NotFound("Conversation not found")
        return row[0], row[1], row[2], row[3]

    async def window(
        self, session: AsyncSession, conversation: Conversation, account: ChannelAccount
    ) -> ReplyWindow:
        sent = 0
        if conversation.last_inbound_at is not None:
            sent = int(
                await session.scalar(
                    select(func.count())
                    .select_from(Message)
                    .where(
                        Message.conversation_id == conversation.id,
                        Message.direction == Direction.outbound,
                        Message.kind == "message",
                        Message.type != OutboundType.template.value,
                        Message.created_at >= conversation.last_inbound_at,
                    )
                )
                or 0
            )
        return reply_window(
            account.type, last_inbound_at=conversation.last_inbound_at, sent_since_inbound=sent, now=utcnow()
        )

    async def _messages(self, session: AsyncSession, conditions: list[Any], limit: int) -> list[MessageRead]:
        stmt = (
            select(Message, User.name)
            .outerjoin(User, User.id == Message.author_id)
            .where(*conditions)
            .order_by(Message.id.desc())
            .limit(limit)
        )
        rows = (await session.execute(stmt)).all()
        result = []
        for message, author_name in reversed(rows):
            read = MessageRead.model_validate(message)
            read.author_name = author_name
            result.append(read)
        return result

    async def detail(
        self,
        session: AsyncSession,
        conversation_id: uuid.UUID,
        *,
        before_id: int | None = None,
        limit: int = 50,
    ) -> ConversationDetail:
        """The conversation view: messages across all of the contact's channels, newest last."""
        conversation, contact, account, assignee = await self._load(session, conversation_id)
        # The whole history with this customer, whatever channel and account it came through.
        conditions: list[Any] = [Message.contact_id == contact.id]
        if before_id is not None:
            conditions.append(Message.id < before_id)
        messages = await self._messages(session, conditions, limit)
        pinned = await self._messages(
            session, [Message.conversation_id == conversation.id, Message.pinned_at.is_not(None)], 50
        )
        identities = (
            await session.scalars(select(ContactIdentity).where(ContactIdentity.contact_id == contact.id))
        ).all()
        recent_rows = (
            await session.execute(
                self._base()
                .where(Conversation.contact_id == contact.id, Conversation.id != conversation.id)
                .order_by(Conversation.last_message_at.desc())
                .limit(10)
            )
        ).all()
        window = await self.window(session, conversation, account)
        return ConversationDetail(
            conversation=_read(conversation, contact, account, assignee),
            contact=ContactBrief(
                id=contact.id,
                display_name=contact.display_name,
                phone=contact.phone,
                email=contact.email,
                avatar_url=contact.avatar_url,
                city=contact.city,
                country=contact.country,
                lifecycle_stage=contact.lifecycle_stage,
                identities=[IdentityRead.model_validate(i) for i in identities],
            ),
            messages=messages,
            pinned=pinned,
            window=WindowRead(**window.as_dict()),
            recent_conversations=[_read(*row) for row in recent_rows],
        )

    async def mark_read(self, session: AsyncSession, ctx: Context, *, conversation_id: uuid.UUID) -> None:
        conversation, contact, _account, _assignee = await self._load(session, conversation_id)
        if conversation.unread_count:
            conversation.unread_count = 0
            publish_conversation_updated(session, ctx, conversation, contact)

    async def accept(
        self, session: AsyncSession, ctx: Context, *, actor: Principal, conversation_id: uuid.UUID
    ) -> Conversation:
        """The agent takes an unassigned conversation; two agents accepting at once cannot both win."""
        result = await session.execute(
            update(Conversation)
            .where(Conversation.id == conversation_id, Conversation.assignee_id.is_(None))
            .values(assignee_id=actor.user.id, status=ConversationStatus.open, updated_at=utcnow())
        )
        conversation, contact, _account, _assignee = await self._load(session, conversation_id)
        if not result.rowcount:  # type: ignore[attr-defined]
            if conversation.assignee_id == actor.user.id:
                return conversation
            raise Conflict("Someone else has already taken this conversation")
        await session.refresh(conversation)
        publish_conversation_updated(session, ctx, conversation, contact)
        from parley.routing.service import on_conversation_taken

        await on_conversation_taken(session, ctx, conversation.id, actor.user.id)
        return conversation

    async def assign(
        self,
        session: AsyncSession,
        ctx: Context,
        *,
        actor: Principal,
        conversation_id: uuid.UUID,
        data: AssignUpdate,
    ) -> Conversation:
        conversation, contact, _account, _assignee = await self._load(session, conversation_id)
        if data.assignee_id is not None:
            assignee = await session.get(User, data.assignee_id)
            if assignee is None or not assignee.is_active:
                raise UnprocessableEntity("Unknown or deactivated agent")
        if data.team_id is not None and await session.get(Team, data.team_id) is None:
            raise UnprocessableEntity("Unknown team")
        # Agents may take or hand back their own work; moving others' needs a supervisor.
        moving_someone_else = conversation.assignee_id not in (None, actor.user.id) or (
            data.assignee_id not in (None, actor.user.id)
        )
        if moving_someone_else and not actor.can(Permission.operations_write):
            raise Forbidden("Only supervisors reassign other agents' conversations")
        before = (conversation.assignee_id, conversation.team_id)
        if data.assignee_id is not None and data.assignee_id != conversation.assignee_id:
            from parley.routing.service import on_conversation_taken

            await on_conversation_taken(session, ctx, conversation.id, data.assignee_id)
        conversation.assignee_id = data.assignee_id
        conversation.team_id = data.team_id if data.team_id is not None else conversation.team_id
        if before != (conversation.assignee_id, conversation.team_id):
            await audit.record(
                session,
                actor=actor,
                action="conversation.assign",
                target_type="conversation",
                target_id=conversation.id,
                changes={
                    "assignee": [str(before[0]), str(conversation.assignee_id)],
                    "team": [str(before[1]), str(conversation.team_id)],
                },
            )
            publish_conversation_updated(session, ctx, conversation, contact)
            if before[0] is not None and before[0] != conversation.assignee_id:
                from parley.routing.service import on_agent_available

                await session.flush()
                await on_agent_available(session, ctx, before[0])
        return conversation

    async def set_status(
        self,
        session: AsyncSession,
        ctx: Context,
        *,
        actor: Principal,
        conversation_id: uuid.UUID,
        data: StatusUpdate,
    ) -> Conversation:
        conversation, contact, _account, _assignee = await self._load(session, conversation_id)
        if data.status == ConversationStatus.snoozed:
            if data.snoozed_until is None or data.snoozed_until <= utcnow():
                raise UnprocessableEntity("Snoozing needs a time in the future")
            conversation.snoozed_until = data.snoozed_until
        else:
            conversation.snoozed_until = None
        if data.status == ConversationStatus.resolved:
            has_reasons = await session.scalar(
                select(ContactReason.id).where(ContactReason.is_active.is_(True)).limit(1)
            )
            if data.contact_reason_id is None and has_reasons:
                raise UnprocessableEntity("Pick a contact reason to close the conversation")
            if (
                data.contact_reason_id is not None
                and await session.get(ContactReason, data.contact_reason_id) is None
            ):
                raise UnprocessableEntity("Unknown contact reason")
            conversation.contact_reason_id = data.contact_reason_id
            conversation.resolved_at = utcnow()
            conversation.resolved_by_id = actor.user.id
        else:
            conversation.resolved_at = None
        if conversation.status != data.status and conversation.status == ConversationStatus.resolved:
            await self._ensure_no_other_active(session, conversation)
        conversation.status = data.status
        await session.flush()
        publish_conversation_updated(session, ctx, conversation, contact)
        if data.status in (ConversationStatus.resolved, ConversationStatus.snoozed):
            from parley.routing.service import on_conversation_closed

            await on_conversation_closed(
                session, ctx, conversation, previous_assignee=conversation.assignee_id
            )
        return conversation

    async def _ensure_no_other_active(self, session: AsyncSession, conversation: Conversation) -> None:
        other = await session.scalar(
            select(Conversation.id).where(
                Conversation.contact_id == conversation.contact_id,
                Conversation.account_id == conversation.account_id,
                Conversation.status != ConversationStatus.resolved,
                Conversation.id != conversation.id,
            )
        )
        if other:
            raise Conflict("The customer already has an open conversation on this account")

    async def reply(
        self,
        session: AsyncSession,
        ctx: Context,
        *,
        actor: Principal | None,
        conversation_id: uuid.UUID,
        data: ReplyCreate,
        priority: Priority = Priority.agent_reply,
    ) -> Message:
        """A note, or a message queued for delivery; refused with a clear reason outside the reply window."""
        conversation, contact, account, _assignee = await self._load(session, conversation_id)
        now = utcnow()
        if data.type == "note":
            if not data.text:
                raise UnprocessableEntity("A note needs text")
            message = Message.note(
                account_id=account.id,
                conversation_id=conversation.id,
                contact_id=contact.id,
                text=data.text,
                author_id=actor.user.id if actor else None,
                created_at=now,
            )
            session.add(message)
            await session.flush()
        else:
            outbound = self._outbound(data, peer_id=await self._peer_id(session, conversation, account))
            window = await self.window(session, conversation, account)
            try:
                check_reply_allowed(window, outbound.type)
            except ChannelWindowClosedError as exc:
                raise UnprocessableEntity(exc.message) from exc
            from parley.delivery.service import enqueue

            message = await enqueue(
                session,
                account=account,
                message=outbound,
                priority=priority,
                conversation_id=conversation.id,
                contact_id=contact.id,
                author_id=actor.user.id if actor else None,
            )
            conversation.last_outbound_at = now
            contact.last_outbound_at = now
            contact.outbound_count += 1
            if conversation.status == ConversationStatus.resolved:
                await self._ensure_no_other_active(session, conversation)
                conversation.status = ConversationStatus.open
                conversation.resolved_at = None
        conversation.last_message_at = now
        conversation.last_message_preview = (data.text or f"[{data.type}]")[:200]
        if actor is not None and conversation.assignee_id is None and data.type != "note":
            conversation.assignee_id = actor.user.id
        await session.flush()
        summary = conversation_summary(conversation, contact)
        publish_on_commit(
            session,
            ctx,
            {
                "type": "message.created",
                "message": message_summary(message),
                "conversation": summary,
                "audience": AUDIENCE,
            },
        )
        return message

    async def _peer_id(
        self, session: AsyncSession, conversation: Conversation, account: ChannelAccount
    ) -> str:
        """The customer's id on this account, from their latest message here."""
        peer = await session.scalar(
            select(Message.peer_id)
            .where(Message.conversation_id == conversation.id, Message.direction == Direction.inbound)
            .order_by(Message.id.desc())
            .limit(1)
        )
        if peer:
            return peer
        identity = await session.scalar(
            select(ContactIdentity.value).where(
                ContactIdentity.contact_id == conversation.contact_id,
                ContactIdentity.scope == str(account.id),
            )
        )
        if identity is None:
            raise UnprocessableEntity("The customer has no identity on this account to send to")
        return identity

    @staticmethod
    def _outbound(data: ReplyCreate, *, peer_id: str) -> OutboundMessage:
        kind = {"file": OutboundType.file, "voice": OutboundType.voice}.get(
            data.type, OutboundType(data.type)
        )
        if kind == OutboundType.text and not (data.text or "").strip():
            raise UnprocessableEntity("The message is empty")
        if (
            kind in (OutboundType.image, OutboundType.file, OutboundType.video, OutboundType.voice)
            and data.media is None
        ):
            raise UnprocessableEntity(f"A {data.type} message needs media")
        if kind == OutboundType.template and data.template is None:
            raise UnprocessableEntity("Pick a template")
        return OutboundMessage(
            to=peer_id,
            type=kind,
            text=data.text,
            media=data.media,
            location=data.location,
            template=data.template,
            interactive=data.interactive,
            idempotency_key=uuid.uuid4().hex,
        )

    async def pin(
        self, session: AsyncSession, ctx: Context, *, actor: Principal, message_id: int, pinned: bool
    ) -> Message:
        message = await session.get(Message, message_id)
        if message is None or message.conversation_id is None:
            raise NotFound("Message not found")
        message.pinned_at = utcnow() if pinned else None
        message.pinned_by_id = actor.user.id if pinned else None
        publish_on_commit(
            session,
            ctx,
            {
                "type": "message.pinned",
                "message": message_summary(message) | {"pinned_at": message.pinned_at},
                "audience": AUDIENCE,
            },
        )
        return message


conversation = ConversationService()


async def set_presence(session: AsyncSession, ctx: Context, *, actor: Principal, presence: str) -> None:
    user = await session.get(User, actor.user.id)
    if user is None:
        raise NotFound("User not found")
    if user.presence != presence:
        user.presence = presence
        user.presence_changed_at = utcnow()
        publish_on_commit(
            session,
            ctx,
            {"type": "agent.presence", "user_id": str(user.id), "presence": presence, "audience": AUDIENCE},
        )
        if presence == "online":
            from parley.routing.service import on_agent_available

            await session.flush()
            await on_agent_available(session, ctx, user.id)


__all__ = ["conversation", "set_presence"]
