"""The conversation page and what is written from it: replies, notes and reactions."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from flask import flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.datastructures import MultiDict

from helpdesk import transaction
from helpdesk.automations import rules as automation_rules
from helpdesk.dm import service as dm
from helpdesk.dm.models import Conversation, MessageStatus
from helpdesk.errors import DomainError, InvalidState, NewerReply
from helpdesk.idempotency.service import (
    Answer,
    Claim,
    IdempotencyKeyReused,
    claim,
    fingerprint,
)
from helpdesk.inbox import service as inbox
from helpdesk.inbox import thread
from helpdesk.inbox.queries import brand_lookups
from helpdesk.live import service as live
from helpdesk.queueing import enqueue_delivery, enqueue_reaction
from helpdesk.tickets.queries import sla_state
from helpdesk.tickets.service import state_token
from helpdesk.types import utcnow
from helpdesk.web.console import bp
from helpdesk.web.console.context import (
    actor,
    brand,
    conversation_or_404,
    me,
    message_or_404,
    parse_id,
    parse_local,
    perform,
)

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
    # One composition, one message: a repeat of this token answers what the first did.
    compose_token: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    # The newest message the agent had seen when they wrote (None: not known, no check).
    seen_up_to: int | None = None
    confirmed: bool = False
    split: bool = False

    @classmethod
    def from_form(cls, form: MultiDict, mode: str) -> Draft:
        attachments = [
            {"type": kind if kind in ATTACHMENT_TYPES else "file", "url": url.strip()}
            for kind, url in zip(
                form.getlist("attachment_type"), form.getlist("attachment_url"), strict=False
            )
            if url.strip()
        ]
        # The reply box's files, uploaded first (/uploads): checked for the brand when sent.
        attachments += [{"upload_id": value[:20]} for value in form.getlist("upload_id")[:10]]
        return cls(
            mode=mode,
            text=form.get("text", "")[:10_000],
            attachments=attachments,
            reply_to_id=parse_id(form.get("reply_to"), "reply_to"),
            send_at=form.get("send_at", "")[:40],
            compose_token=form.get("compose_token", "")[:255] or secrets.token_urlsafe(18),
            seen_up_to=parse_id(form.get("last_seen_message_id"), "last_seen_message_id"),
            confirmed=form.get("confirm") == "1",
            split=form.get("split") == "1",
        )

    def fingerprint(self, conversation_id: int) -> str:
        return fingerprint(
            self.mode, conversation_id, self.text, self.attachments, self.reply_to_id, self.send_at
        )


def render_conversation(
    conversation: Conversation,
    draft: Draft | None = None,
    status: int = 200,
    newer_reply: int | None = None,
):
    """The thread and its panels; opening the latest page marks it seen for the agent (unread
    state) and for the brand (read receipts), all but vanish-mode messages, which wait for the
    agent to reveal them."""
    before = parse_id(request.args.get("before"), "before")
    if before is None:
        now = utcnow()
        dm.mark_seen_by_brand(conversation, at=now)
        thread.mark_viewed(me().id, conversation.id, now)
        transaction.commit()  # before loading: a commit expires what was loaded
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
            vanish=dm.vanish_state(conversation),
            now=utcnow(),
            newer_reply=newer_reply,
            ticket_state=state_token(panel.ticket) if panel.ticket else "",
            automation_runs=automation_rules.runs_of(panel.ticket.id) if panel.ticket else [],
        ),
        status,
    )


@bp.get("/conversations/<int:conversation_id>")
def conversation(conversation_id: int) -> ResponseReturnValue:
    return render_conversation(conversation_or_404(conversation_id))


@bp.post("/conversations/<int:conversation_id>/leave")
def leave(conversation_id: int) -> ResponseReturnValue:
    """The agent closed the page: seen vanish-mode messages that were answered or confirmed read
    may be purged now, and the others no longer see the agent there."""
    conversation = conversation_or_404(conversation_id)
    dm.leave_thread(conversation)
    live.leave(conversation, me())
    transaction.commit()
    return "", 204


def _claim(conversation: Conversation, draft: Draft) -> Answer | Claim:
    """The compose token: a second submission of one composition does nothing new."""
    try:
        return claim(
            conversation.brand_id,
            f"agent:{me().id}",
            draft.compose_token,
            draft.fingerprint(conversation.id),
        )
    except IdempotencyKeyReused:
        raise InvalidState(
            "This form was already sent with other words. Check the conversation below, then "
            "send your message again."
        ) from None


def _refused(
    conversation: Conversation,
    draft: Draft,
    refused: DomainError,
    newer_reply: int | None = None,
):
    """Nothing was saved; the page comes back with the flash and the text as typed (with a new
    compose token: the refused one sent nothing)."""
    transaction.rollback()
    flash(refused.message, "error")
    draft.compose_token = secrets.token_urlsafe(18)
    draft.confirmed = False
    return render_conversation(conversation, draft, status=refused.status, newer_reply=newer_reply)


@bp.post("/conversations/<int:conversation_id>/reply")
def reply(conversation_id: int) -> ResponseReturnValue:
    conversation = conversation_or_404(conversation_id)
    draft = Draft.from_form(request.form, "reply")
    quoted = message_or_404(conversation, draft.reply_to_id) if draft.reply_to_id else None
    here = url_for(".conversation", conversation_id=conversation.id, _anchor="composer")
    try:
        claimed = _claim(conversation, draft)
        if isinstance(claimed, Answer):
            flash("This reply was already sent: it goes to the customer once.", "info")
            return redirect(here)
        messages = inbox.compose(
            conversation,
            me(),
            text=draft.text,
            attachments=draft.attachments,
            reply_to=quoted,
            send_at=parse_local(draft.send_at, "Send at"),
            seen_up_to=draft.seen_up_to,
            confirmed=draft.confirmed,
            split=draft.split,
        )
        claimed.record(303, here)
    except NewerReply as newer:
        return _refused(conversation, draft, newer, newer_reply=newer.newest_id)
    except DomainError as refused:
        return _refused(conversation, draft, refused)
    transaction.commit()
    queued = [m.id for m in messages if m.status is MessageStatus.QUEUED]
    for message_id in queued:
        enqueue_delivery(message_id)
    count = f"{len(messages)} messages" if len(messages) > 1 else "Reply"
    flash(f"{count} queued for sending." if queued else f"{count} scheduled.", "success")
    return redirect(here)


@bp.post("/conversations/<int:conversation_id>/note")
def note(conversation_id: int) -> ResponseReturnValue:
    conversation = conversation_or_404(conversation_id)
    draft = Draft.from_form(request.form, "note")
    here = url_for(".conversation", conversation_id=conversation.id, _anchor="composer")
    try:
        claimed = _claim(conversation, draft)
        if isinstance(claimed, Answer):
            flash("This note was already added.", "info")
            return redirect(here)
        inbox.add_note(conversation, me(), draft.text)
        claimed.record(303, here)
    except DomainError as refused:
        return _refused(conversation, draft, refused)
    transaction.commit()
    flash("Note added.", "success")
    return redirect(here)


@bp.post("/conversations/<int:conversation_id>/messages/<int:message_id>/react")
def react(conversation_id: int, message_id: int) -> ResponseReturnValue:
    """React as the brand (an empty emoji removes the brand's reaction)."""
    conversation = conversation_or_404(conversation_id)
    message = message_or_404(conversation, message_id)
    emoji = request.form.get("emoji", "").strip()
    if not emoji:
        return perform(
            lambda: inbox.unreact(message, actor()),
            "Reaction removed.",
            _here(conversation),
            after=lambda _removed: enqueue_reaction(message.id, None),
        )
    return perform(
        lambda: inbox.react(message, emoji, actor()),
        "Reacted.",
        _here(conversation),
        after=lambda _reaction: enqueue_reaction(message.id, emoji),
    )


def _here(conversation: Conversation) -> str:
    return url_for(".conversation", conversation_id=conversation.id)
