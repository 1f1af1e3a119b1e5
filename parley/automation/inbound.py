"""Automation's part of the inbound pipeline: after an event is stored as CRM rows, answer it if a rule says so.

Order for a customer's text: a flow waiting for this contact's reply takes it;
otherwise the best keyword rule answers (and may start a flow); otherwise the
text is kept as unmatched. Follows, QR scans and menu clicks have their own rules.
"""

from __future__ import annotations

from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from parley.automation import knowledge, rules
from parley.automation.flows import service as flows
from parley.automation.handoff import active_conversation, hand_off
from parley.automation.menus import click_action
from parley.automation.outbound import Responder, send_reply
from parley.automation.rules import CompiledRule
from parley.automation.schemas import Reply
from parley.channels.base import InboundKind
from parley.context import Context
from parley.conversations.pipeline import Outcome
from parley.kit.types import utcnow
from parley.models import ChannelAccount, Contact, TimelineEvent
from parley.models import InboundEvent as InboundEventRow

log = structlog.get_logger()

TEXT_TYPES = frozenset({"text"})


async def react(
    session: AsyncSession,
    ctx: Context,
    *,
    account: ChannelAccount,
    row: InboundEventRow,
    outcome: Outcome,
    responder: Responder,
) -> bool:
    """Answers the event automatically; True when it was answered, so that routing leaves it alone."""
    contact, event = outcome.contact, outcome.event
    if contact is None or event is None:
        return False
    conversation_id = outcome.conversation.id if outcome.conversation else None
    peer = event.sender.id
    base = {"inbound_event_id": row.id}

    if event.kind == InboundKind.message:
        text = event.text or event.recognition
        # The pipeline usually knows already (it asked along with the contact) that no flow is waiting.
        waiting = (
            None
            if outcome.flow_waiting is False
            else await flows.waiting_run(session, contact_id=contact.id, account_id=account.id)
        )
        if waiting is not None:
            await flows.resume_with_reply(
                session,
                ctx,
                waiting,
                text or f"[{event.type}]",
                conversation_id=conversation_id,
                responder=responder,
            )
            return True
        if event.type not in TEXT_TYPES or not text:
            return False
        match = await rules.match_text(session, account.id, text)
        if match is None:
            if await _bot_answer(session, account, contact, conversation_id, peer, text, responder, row.id):
                return True
            await rules.record_unmatched(session, account_id=account.id, contact_id=contact.id, text=text)
            return False
        await _apply_rule(
            session,
            ctx,
            match.target,
            account=account,
            contact=contact,
            conversation_id=conversation_id,
            peer=peer,
            responder=responder,
            key=f"auto:{row.id}",
            trigger={**base, "type": "keyword", "rule_id": str(match.target.id), "keyword": match.keyword},
            variables={"message": text},
        )
        return True

    if event.type in ("subscribe", "scan"):
        scene = event.data.get("scene") or None
        rule: CompiledRule | None = None
        if scene is not None:
            # A follow through a campaign QR code is answered as that scene's scan.
            rule = await rules.event_rule(session, account.id, "scan", scene)
        if rule is None and event.type == "subscribe":
            rule = await rules.event_rule(session, account.id, "follow")
        if rule is not None:
            await _apply_rule(
                session,
                ctx,
                rule,
                account=account,
                contact=contact,
                conversation_id=None,
                peer=peer,
                responder=responder,
                key=f"auto:{row.id}",
                trigger={**base, "type": event.type, "rule_id": str(rule.id), "scene": scene},
                variables={"scene": scene},
            )
        return rule is not None

    if event.type in ("menu_click", "scancode", "location_select", "menu_pic"):
        key = str(event.data.get("event_key") or "")
        action = await click_action(session, account.id, key) if key else None
        if action is None:
            return False
        trigger = {**base, "type": "menu", "key": key}
        variables: dict[str, Any] = {"menu_key": key}
        if event.data.get("scan_result"):
            variables["scan_result"] = event.data["scan_result"]
        if action.reply is not None:
            await send_reply(
                session,
                account=account,
                to=peer,
                reply=action.reply,
                conversation_id=None,
                contact_id=contact.id,
                responder=responder,
                key=f"auto:{row.id}",
                variables=variables,
            )
        elif action.flow_id is not None:
            await flows.start_run(
                session,
                ctx,
                flow_id=action.flow_id,
                account=account,
                contact=contact,
                conversation_id=None,
                peer_id=peer,
                trigger=trigger,
                variables=variables,
                responder=responder,
            )
        elif action.queue_id is not None:
            await _queue_from_menu(session, ctx, account, contact, action.queue_id, action.note)
        return True
    return False


async def _bot_answer(
    session: AsyncSession,
    account: ChannelAccount,
    contact: Contact,
    conversation_id: Any,
    peer: str,
    text: str,
    responder: Responder,
    row_id: int,
) -> bool:
    """Answers from the knowledge base when confident; the conversation stays with people otherwise."""
    hit = await knowledge.confident_answer(session, text)
    if hit is None:
        return False
    await send_reply(
        session,
        account=account,
        to=peer,
        reply=Reply(type="text", text=hit.answer[:2000]),
        conversation_id=conversation_id,
        contact_id=contact.id,
        responder=responder,
        key=f"kb:{row_id}",
    )
    if conversation_id is not None:
        session.add(
            TimelineEvent(
                contact_id=contact.id,
                account_id=account.id,
                type="bot_answer",
                data={
                    "article_id": str(hit.article_id),
                    "title": hit.title,
                    "confidence": round(hit.confidence, 3),
                },
                occurred_at=utcnow(),
            )
        )
    return True


async def _apply_rule(
    session: AsyncSession,
    ctx: Context,
    rule: CompiledRule,
    *,
    account: ChannelAccount,
    contact: Contact,
    conversation_id: Any,
    peer: str,
    responder: Responder,
    key: str,
    trigger: dict[str, Any],
    variables: dict[str, Any],
) -> None:
    reply = rule.pick_reply()
    if reply is not None:
        await send_reply(
            session,
            account=account,
            to=peer,
            reply=reply,
            conversation_id=conversation_id,
            contact_id=contact.id,
            responder=responder,
            key=key,
            variables={k: v for k, v in variables.items() if v is not None},
        )
    if rule.flow_id is not None:
        await flows.start_run(
            session,
            ctx,
            flow_id=rule.flow_id,
            account=account,
            contact=contact,
            conversation_id=conversation_id,
            peer_id=peer,
            trigger=trigger,
            variables={k: v for k, v in variables.items() if v is not None},
            responder=responder,
        )


async def _queue_from_menu(
    session: AsyncSession,
    ctx: Context,
    account: ChannelAccount,
    contact: Contact,
    queue_id: Any,
    note: str | None,
) -> None:
    """A menu button that puts the customer in a queue (IVR-style): through the same hand-off seam as flows."""
    conversation = await active_conversation(session, contact_id=contact.id, account_id=account.id)
    await hand_off(session, ctx, conversation_id=conversation.id, queue_id=queue_id, note=note)
