"""The conversation page and what is written from it: replies, notes and reactions."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TypeVar

from flask import flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.datastructures import MultiDict

from helpdesk.dm import service as dm
from helpdesk.dm.models import Conversation, Message, MessageStatus
from helpdesk.errors import DomainError, InvalidState, ValidationError
from helpdesk.extensions import db
from helpdesk.inbox import service as inbox
from helpdesk.inbox import thread
from helpdesk.inbox.queries import brand_lookups, sla_state
from helpdesk.live import events
from helpdesk.live import service as live
from helpdesk.tickets import notes
from helpdesk.tickets.service import current_ticket
from helpdesk.types import utcnow
from helpdesk.web.console import bp
from helpdesk.web.console.context import (
    brand,
    conversation_or_404,
    enqueue_delivery,
    enqueue_reaction,
    me,
    message_or_404,
    parse_id,
    parse_local,
    perform,
)

# What a canned reply leaves in the text when it had no value for a placeholder.
T = TypeVar("T")
UNFILLED = re.compile(r"\{\{\s*(?:contact|agent|brand|ticket)\.\w+\s*\}\}")
ATTACHMENT_TYPES = ("image", "video", "audio", "file")
REACTIONS = ("❤️", "👍", "😂", "😮", "😢", "🙏")


@dataclass
class Draft:
    """What the agent typed, kept to fill the form again when the send is refused."""

    mode: str = "reply"
    text: str = ""
    attachments: list[dict] = field(default_factory=list)
    reply_to_id: int | None = None
    send_at: str = ""

    @classmethod
    def from_form(cls, form: MultiDict, mode: str) -> Draft:
        attachments = [
            {"type": kind if kind in ATTACHMENT_TYPES else "file", "url": url.strip()}
            for kind, url in zip(
                form.getlist("attachment_type"), form.getlist("attachment_url"), strict=False
            )
            if url.strip()
        ]
        return cls(
            mode=mode,
            text=form.get("text", "")[:10_000],
            attachments=attachments,
            reply_to_id=parse_id(form.get("reply_to"), "reply_to"),
            send_at=form.get("send_at", "")[:40],
        )


def render_conversation(conversation: Conversation, draft: Draft | None = None, status: int = 200):
    """The thread and its panels; opening the latest page marks it seen for the agent (unread
    state) and for the brand (read receipts, vanish-mode purge)."""
    before = parse_id(request.args.get("before"), "before")
    if before is None:
        now = utcnow()
        dm.mark_seen_by_brand(conversation, at=now)
        thread.mark_viewed(me().id, conversation.id, now)
        db.session.commit()  # before loading: a commit expires what was loaded
    view = thread.load_thread(conversation, before_id=before)
    draft = draft or Draft(reply_to_id=request.args.get("reply_to", type=int))
    quoting = message_or_404(conversation, draft.reply_to_id) if draft.reply_to_id else None
    panel = thread.load_panel(conversation, me().id)
    return (
        render_template(
            "console/conversation.html",
            conversation=conversation,
            thread=view,
            panel=panel,
            sla=sla_state(panel.ticket),
            lookups=brand_lookups(brand().id),
            draft=draft,
            quoting=quoting,
            reactions=REACTIONS,
            now=utcnow(),
        ),
        status,
    )


@bp.get("/conversations/<int:conversation_id>")
def conversation(conversation_id: int) -> ResponseReturnValue:
    return render_conversation(conversation_or_404(conversation_id))


@bp.post("/conversations/<int:conversation_id>/leave")
def leave(conversation_id: int) -> ResponseReturnValue:
    """The agent closed the page: seen vanish-mode messages may be purged now, and the others
    no longer see the agent there."""
    conversation = conversation_or_404(conversation_id)
    dm.leave_thread(conversation)
    live.leave(conversation, me())
    db.session.commit()
    return "", 204


def _refused(conversation: Conversation, draft: Draft, refused: DomainError):
    """Nothing was saved; the page comes back with the flash and the text as typed."""
    db.session.rollback()
    flash(refused.message, "error")
    return render_conversation(conversation, draft, status=refused.status)


@bp.post("/conversations/<int:conversation_id>/reply")
def reply(conversation_id: int) -> ResponseReturnValue:
    conversation = conversation_or_404(conversation_id)
    draft = Draft.from_form(request.form, "reply")
    quoted = message_or_404(conversation, draft.reply_to_id) if draft.reply_to_id else None
    try:
        if UNFILLED.search(draft.text):
            raise ValidationError(
                "Fill in the highlighted {{ placeholders }} first: the canned reply had no value "
                "for them."
            )
        message = inbox.reply(
            conversation,
            me(),
            text=draft.text if draft.text.strip() else None,
            attachments=draft.attachments,
            reply_to=quoted,
            send_at=parse_local(draft.send_at, "Send at"),
        )
    except DomainError as refused:
        return _refused(conversation, draft, refused)
    db.session.commit()
    if message.status is MessageStatus.QUEUED:
        enqueue_delivery(message.id)
        flash("Reply queued for sending.", "success")
    else:
        flash("Reply scheduled.", "success")
    return redirect(url_for(".conversation", conversation_id=conversation.id, _anchor="composer"))


@bp.post("/conversations/<int:conversation_id>/note")
def note(conversation_id: int) -> ResponseReturnValue:
    conversation = conversation_or_404(conversation_id)
    draft = Draft.from_form(request.form, "note")
    try:
        ticket = current_ticket(conversation)
        if ticket is None:
            raise InvalidState("Notes go on a ticket: accept the request first.")
        notes.add_note(ticket, me(), draft.text)
    except DomainError as refused:
        return _refused(conversation, draft, refused)
    db.session.commit()
    flash("Note added.", "success")
    return redirect(url_for(".conversation", conversation_id=conversation.id, _anchor="composer"))


@bp.post("/conversations/<int:conversation_id>/messages/<int:message_id>/react")
def react(conversation_id: int, message_id: int) -> ResponseReturnValue:
    """React as the brand (an empty emoji removes the brand's reaction)."""
    conversation = conversation_or_404(conversation_id)
    message = message_or_404(conversation, message_id)
    emoji = request.form.get("emoji", "").strip()
    if not emoji:
        return perform(
            lambda: _announced(message, dm.unreact(message)),
            "Reaction removed.",
            _here(conversation),
            after=lambda _removed: enqueue_reaction(message.id, None),
        )
    return perform(
        lambda: _announced(message, dm.react(message, emoji, agent=me())),
        "Reacted.",
        _here(conversation),
        after=lambda _reaction: enqueue_reaction(message.id, emoji),
    )


def _announced(message: Message, result: T) -> T:
    """Colleagues with the thread open see the brand's reaction change."""
    events.message_updated(message)
    return result


def _here(conversation: Conversation) -> str:
    return url_for(".conversation", conversation_id=conversation.id)
