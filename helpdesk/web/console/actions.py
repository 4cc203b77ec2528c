"""Ticket and conversation actions: each a POST form, one service call, a commit and a flash."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, time, timedelta

from flask import abort, request, url_for
from flask.typing import ResponseReturnValue

from helpdesk.accounts.actor import Actor
from helpdesk.dm import service as dm
from helpdesk.dm.models import Contact, Conversation
from helpdesk.dm.visibility import contact_in
from helpdesk.errors import InvalidState, ValidationError
from helpdesk.inbox import service as inbox
from helpdesk.tickets import service as tickets
from helpdesk.tickets import tags
from helpdesk.tickets.models import Ticket, TicketStatus
from helpdesk.types import utcnow
from helpdesk.web.console import bp
from helpdesk.web.console.context import (
    actor,
    conversation_or_404,
    me,
    parse_id,
    parse_local,
    perform,
    timezone,
)

REQUEST_ACTIONS: dict[str, tuple[Callable[[Conversation, Actor], object], str]] = {
    "accept": (inbox.accept, "Request accepted: it is in Primary with a ticket."),
    "decline": (inbox.decline, "Request declined."),
    "block": (inbox.block, "Contact blocked."),
}
SNOOZE_PRESETS = ("1h", "4h", "tomorrow", "next_week")


def _ticket(conversation: Conversation) -> Ticket:
    """The current ticket, as the page that posted the form showed it."""
    ticket = tickets.current_ticket(conversation)
    if ticket is None:
        raise InvalidState("This conversation has no ticket yet: accept the request first.")
    tickets.check_unchanged(ticket, request.form.get("ticket_state"))
    return ticket


def _here(conversation_id: int) -> str:
    return url_for(".conversation", conversation_id=conversation_id)


def _optional_id(name: str) -> int | None:
    return parse_id(request.form.get(name), name)


@bp.post("/conversations/<int:conversation_id>/assign")
def assign(conversation_id: int) -> ResponseReturnValue:
    conversation = conversation_or_404(conversation_id)
    assignee_id = _optional_id("assignee_id")
    return perform(
        lambda: tickets.assign(_ticket(conversation), assignee_id, actor()),
        "Assigned." if assignee_id else "Unassigned.",
        _here(conversation_id),
    )


@bp.post("/conversations/<int:conversation_id>/take")
def take(conversation_id: int) -> ResponseReturnValue:
    conversation = conversation_or_404(conversation_id)
    return perform(
        lambda: tickets.take(_ticket(conversation), actor()), "It's yours.", _here(conversation_id)
    )


@bp.post("/conversations/<int:conversation_id>/unassign")
def unassign(conversation_id: int) -> ResponseReturnValue:
    conversation = conversation_or_404(conversation_id)
    return perform(
        lambda: tickets.unassign(_ticket(conversation), actor()),
        "Unassigned.",
        _here(conversation_id),
    )


def snooze_until(preset: str | None, custom: str | None) -> datetime | None:
    """A typed time, else a preset (1h, 4h, tomorrow or next Monday at 9:00 brand time)."""
    if custom and custom.strip():
        return parse_local(custom, "Snooze until")
    now = utcnow()
    if preset in ("1h", "4h"):
        return now + timedelta(hours=int(preset[0]))
    if preset in ("tomorrow", "next_week"):
        today = now.astimezone(timezone()).date()
        days = 1 if preset == "tomorrow" else 7 - today.weekday()
        local = datetime.combine(today + timedelta(days=days), time(9), tzinfo=timezone())
        return local.astimezone(now.tzinfo)
    if preset:
        raise ValidationError(f"unknown snooze choice {preset!r}")
    raise ValidationError("choose how long to snooze, or type a time")


@bp.post("/conversations/<int:conversation_id>/status")
def status(conversation_id: int) -> ResponseReturnValue:
    conversation = conversation_or_404(conversation_id)
    value = request.form.get("status", "")

    def change() -> Ticket:
        until = None
        if value == TicketStatus.SNOOZED:
            until = snooze_until(request.form.get("snooze"), request.form.get("snooze_until"))
        return tickets.set_status(_ticket(conversation), value, actor(), snoozed_until=until)

    return perform(change, f"Status: {value}.", _here(conversation_id))


@bp.post("/conversations/<int:conversation_id>/priority")
def priority(conversation_id: int) -> ResponseReturnValue:
    conversation = conversation_or_404(conversation_id)
    value = request.form.get("priority", "")
    return perform(
        lambda: tickets.set_priority(_ticket(conversation), value, actor()),
        f"Priority: {value}.",
        _here(conversation_id),
    )


@bp.post("/conversations/<int:conversation_id>/team")
def team(conversation_id: int) -> ResponseReturnValue:
    conversation = conversation_or_404(conversation_id)
    team_id = _optional_id("team_id")
    return perform(
        lambda: tickets.set_team(_ticket(conversation), team_id, actor()),
        "Team changed.",
        _here(conversation_id),
    )


@bp.post("/conversations/<int:conversation_id>/tags")
def add_tag(conversation_id: int) -> ResponseReturnValue:
    conversation = conversation_or_404(conversation_id)
    name = request.form.get("name", "")
    return perform(
        lambda: tags.add_tag(_ticket(conversation), name, me()), "Tagged.", _here(conversation_id)
    )


@bp.post("/conversations/<int:conversation_id>/tags/remove")
def remove_tag(conversation_id: int) -> ResponseReturnValue:
    conversation = conversation_or_404(conversation_id)
    name = request.form.get("name", "")
    return perform(
        lambda: tags.remove_tag(_ticket(conversation), name, me()),
        "Tag removed.",
        _here(conversation_id),
    )


@bp.post("/conversations/<int:conversation_id>/request")
def request_action(conversation_id: int) -> ResponseReturnValue:
    conversation = conversation_or_404(conversation_id)
    action = request.form.get("action", "")
    if action not in REQUEST_ACTIONS:
        abort(400, description="a request is accepted, declined or blocked")
    call, success = REQUEST_ACTIONS[action]
    target = _here(conversation_id) if action == "accept" else url_for(".inbox", folder="requests")
    return perform(lambda: call(conversation, actor()), success, target)


@bp.post("/conversations/<int:conversation_id>/folder")
def move(conversation_id: int) -> ResponseReturnValue:
    conversation = conversation_or_404(conversation_id)
    folder = request.form.get("folder", "")
    return perform(
        lambda: dm.move_to_folder(conversation, folder),
        f"Moved to {folder.title()}.",
        _here(conversation_id),
    )


@bp.post("/conversations/<int:conversation_id>/notifications")
def notification_level(conversation_id: int) -> ResponseReturnValue:
    """Mute a conversation for yourself: `muted` shows without alerts, `off` not at all."""
    conversation = conversation_or_404(conversation_id)
    level = request.form.get("level", "")
    return perform(
        lambda: dm.set_notification_level(me(), conversation, level),
        "Notification setting saved.",
        _here(conversation_id),
    )


def _contact(conversation: Conversation) -> Contact:
    """The direct thread's contact, or the chosen member of a group thread."""
    contact_id = _optional_id("contact_id") or conversation.contact_id
    contact = contact_in(conversation, contact_id) if contact_id else None
    if contact is None:
        abort(404)
    return contact


@bp.post("/conversations/<int:conversation_id>/contact/block")
def block_contact(conversation_id: int) -> ResponseReturnValue:
    conversation = conversation_or_404(conversation_id)
    contact = _contact(conversation)
    return perform(
        lambda: dm.block_contact(contact),
        f"{contact.display_name} is blocked: their messages will not reach the inbox.",
        _here(conversation_id),
    )


@bp.post("/conversations/<int:conversation_id>/contact/unblock")
def unblock_contact(conversation_id: int) -> ResponseReturnValue:
    conversation = conversation_or_404(conversation_id)
    contact = _contact(conversation)
    return perform(
        lambda: inbox.unblock(contact, actor()),
        f"{contact.display_name} is unblocked.",
        _here(conversation_id),
    )
