"""What a rule does to a ticket, each action through the service a person's action goes through
(tickets, tags, notes, notifications, the outbound path), so history, SLA clocks, assignment and
webhooks follow as they do for a person; the actor is the system, named after the rule.

An action that cannot be done (the tag, team, agent or canned reply is gone, the reply window is
closed) raises ActionFailed or a DomainError; the engine records why and runs the next action.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from helpdesk.accounts.actor import Actor, ActorKind
from helpdesk.accounts.models import Agent, Team, TeamMember
from helpdesk.accounts.service import role_in
from helpdesk.canned.models import CannedReply
from helpdesk.canned.render import render_canned
from helpdesk.canned.service import context_for
from helpdesk.dm.models import Conversation, MessageStatus
from helpdesk.errors import DomainError
from helpdesk.extensions import db
from helpdesk.inbox import service as inbox
from helpdesk.notifications.models import NotificationKind
from helpdesk.notifications.service import notify
from helpdesk.queueing import enqueue_delivery
from helpdesk.tickets import notes, tags
from helpdesk.tickets import service as tickets
from helpdesk.tickets.models import Tag, Ticket, TicketStatus

DELIVER_KEY = "automation_deliveries"


class ActionFailed(DomainError):
    """The action could not be done."""

    code = "automation_action_failed"


@dataclass
class Context:
    """One run of one rule on one ticket."""

    ticket: Ticket
    actor: Actor
    now: datetime
    rule_name: str


def automation_actor(brand_id: int, rule_name: str) -> Actor:
    """The system acting for a rule: trusted like the workers, named so audit shows the rule."""
    return Actor(ActorKind.SYSTEM, brand_id, None, name=f"automation: {rule_name}")


def _int(value: Any, what: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise ActionFailed(f"{what} {value!r} is not an id") from exc


def _tag(ctx: Context, value: Any) -> Tag:
    text = str(value).strip()
    if isinstance(value, int) or text.isdigit():
        tag = db.session.get(Tag, int(text))
        tag = tag if tag is not None and tag.brand_id == ctx.ticket.brand_id else None
    else:
        tag = tags.find_tag(ctx.ticket.brand_id, text)
    if tag is None:
        raise ActionFailed(f"tag {value!r} no longer exists")
    return tag


def assign_team(ctx: Context, value: Any) -> str:
    team_id = _int(value, "team")
    team = db.session.get(Team, team_id)
    if team is None or team.brand_id != ctx.ticket.brand_id:
        raise ActionFailed(f"team {team_id} no longer exists")
    tickets.set_team(ctx.ticket, team_id, ctx.actor, ctx.now)
    return f"team {team.name}"


def assign_agent(ctx: Context, value: Any) -> str:
    agent_id = _int(value, "agent")
    agent = db.session.get(Agent, agent_id)
    if agent is None or not agent.active or role_in(agent_id, ctx.ticket.brand_id) is None:
        raise ActionFailed(f"agent {agent_id} is no longer an active agent of this brand")
    tickets.assign(ctx.ticket, agent_id, ctx.actor, ctx.now)
    return f"assigned to {agent.name}"


def add_tag(ctx: Context, value: Any) -> str:
    tag = _tag(ctx, value)
    tags.add_tag(ctx.ticket, tag.name, None)
    return f"tagged {tag.name}"


def remove_tag(ctx: Context, value: Any) -> str:
    tag = _tag(ctx, value)
    if not tags._is_tagged(ctx.ticket, tag):
        return f"not tagged {tag.name}: nothing to remove"
    tags.remove_tag(ctx.ticket, tag.name, None)
    return f"untagged {tag.name}"


def set_priority(ctx: Context, value: Any) -> str:
    tickets.set_priority(ctx.ticket, str(value), ctx.actor, ctx.now)
    return f"priority {value}"


def set_status(ctx: Context, value: Any) -> str:
    if str(value) == TicketStatus.SNOOZED.value:
        raise ActionFailed("snoozing needs a time: use snooze_minutes")
    tickets.set_status(ctx.ticket, str(value), ctx.actor, now=ctx.now)
    return f"status {value}"


def snooze_minutes(ctx: Context, value: Any) -> str:
    minutes = _int(value, "minutes")
    if minutes <= 0:
        raise ActionFailed("snoozing needs a positive number of minutes")
    until = ctx.now + timedelta(minutes=minutes)
    tickets.set_status(
        ctx.ticket, TicketStatus.SNOOZED, ctx.actor, snoozed_until=until, now=ctx.now
    )
    return f"snoozed for {minutes} minutes"


def send_canned_reply(ctx: Context, value: Any) -> str:
    """Rendered for the ticket's contact and sent as an automated message: it never counts as a
    person's first response, and it goes out only inside the automated reply window."""
    reply_id = _int(value, "canned reply")
    reply = db.session.get(CannedReply, reply_id)
    if reply is None or reply.brand_id != ctx.ticket.brand_id:
        raise ActionFailed(f"canned reply {reply_id} no longer exists")
    conversation = db.session.get(Conversation, ctx.ticket.conversation_id)
    text = render_canned(reply.body, context_for(conversation, None, ctx.ticket)).text
    message = inbox.reply(
        conversation,
        None,
        text=text or None,
        attachments=reply.attachments or None,
        automated=True,
        now=ctx.now,
    )
    message.ticket_id = ctx.ticket.id
    if message.status is MessageStatus.QUEUED:
        db.session.info.setdefault(DELIVER_KEY, []).append(message.id)
    return f"sent canned reply {reply.shortcode}"


def add_note(ctx: Context, value: Any) -> str:
    notes.add_note(ctx.ticket, None, str(value or ""))
    return "note added"


def _recipients(ctx: Context, value: Any) -> list[int]:
    kind, _, raw = str(value).partition(":")
    target = _int(raw, kind or "recipient")
    brand_id = ctx.ticket.brand_id
    if kind == "agent":
        agent = db.session.get(Agent, target)
        if agent is None or not agent.active or role_in(target, brand_id) is None:
            raise ActionFailed(f"agent {target} is no longer an active agent of this brand")
        return [target]
    if kind == "team":
        team = db.session.get(Team, target)
        if team is None or team.brand_id != brand_id:
            raise ActionFailed(f"team {target} no longer exists")
        members = db.session.scalars(
            select(Agent.id)
            .join(TeamMember, TeamMember.agent_id == Agent.id)
            .where(TeamMember.team_id == target, Agent.active.is_(True))
        )
        return list(members)
    raise ActionFailed(f"cannot notify {value!r}: name agent:ID or team:ID")


def notify_action(ctx: Context, value: Any) -> str:
    recipients = _recipients(ctx, value)
    body = f"Automation “{ctx.rule_name}” on ticket #{ctx.ticket.id}"
    for agent_id in recipients:
        notify(
            agent_id,
            ctx.ticket.brand_id,
            NotificationKind.AUTOMATION,
            body,
            ticket_id=ctx.ticket.id,
            conversation_id=ctx.ticket.conversation_id,
            at=ctx.now,
        )
    return f"notified {value} ({len(recipients)})"


HANDLERS: dict[str, Callable[[Context, Any], str]] = {
    "assign_team": assign_team,
    "assign_agent": assign_agent,
    "add_tag": add_tag,
    "remove_tag": remove_tag,
    "set_priority": set_priority,
    "set_status": set_status,
    "snooze_minutes": snooze_minutes,
    "send_canned_reply": send_canned_reply,
    "add_note": add_note,
    "notify": notify_action,
}


# Replies go to a delivery worker after the commit, so the worker finds the row -----------------


@event.listens_for(db.session, "after_commit")
def _deliver_after_commit(session: Session) -> None:
    if session.get_nested_transaction() is not None:
        return
    for message_id in session.info.pop(DELIVER_KEY, []):
        enqueue_delivery(message_id)


@event.listens_for(db.session, "after_soft_rollback")
def _forget_deliveries(session: Session, previous: Any) -> None:
    if not previous.nested:
        session.info.pop(DELIVER_KEY, None)
