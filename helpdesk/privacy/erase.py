"""Erasing a person: everything the app holds about them is removed or overwritten, while the
tickets and metric figures of their conversations stay, anonymous.

What goes, for a contact: their name, username and avatar; the text, attachments (media links and
the stored copies of the media) and platform extras of their messages, and of every message of
their direct conversations (the brand's replies speak to them and about them); the texts their
edits replaced; their reactions; actions still waiting for their messages; the raw webhook
deliveries' events that concern them; live events naming their conversations; the text of outgoing
webhook deliveries that carried their messages; and wherever an agent quoted them (notes, mention
notifications, ticket history, cached API answers), the quote itself. The audit row that says so
holds counts, never content.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, select

from helpdesk.accounts.actor import Actor
from helpdesk.accounts.models import Agent
from helpdesk.audit.models import AuditEvent
from helpdesk.audit.service import record
from helpdesk.channels.models import Channel
from helpdesk.database import rows_matched
from helpdesk.dm.edits import _erase_content, refresh_preview
from helpdesk.dm.models import (
    Contact,
    Conversation,
    ConversationKind,
    Message,
    MessageEdit,
    Reaction,
    ReactionRemoval,
)
from helpdesk.extensions import db
from helpdesk.idempotency.models import IdempotencyKey
from helpdesk.intake.models import PendingAction, WebhookEvent
from helpdesk.live.models import LiveEvent
from helpdesk.media import copies
from helpdesk.notifications.models import Notification
from helpdesk.outgoing.models import WebhookDelivery
from helpdesk.tickets.models import Note, Ticket, TicketEvent
from helpdesk.types import utcnow

ERASED = "[erased]"
# Shorter fragments ("ok", "hi", "Jo") are not worth hunting in agents' own text: replacing them
# would mangle notes without protecting anyone.
MIN_QUOTE = 4
# The lists of a delivery's entry that hold one event each.
EVENT_LISTS = ("messaging", "standby", "changes")
# Keys of attachments and extras whose text is content even when it is one word.
CONTENT_KEYS = frozenset({"text", "title", "caption", "name", "username", "url", "link"})
# Ids that name what was erased, wherever a JSON payload mentions them.
ID_KEYS = {"contact_id": "contacts", "conversation_id": "conversations", "message_id": "messages"}


@dataclass
class Erasure:
    """What one erase removed or overwrote: counts only, so it can be shown and audited."""

    messages: int = 0
    edits: int = 0
    reactions: int = 0
    pending_actions: int = 0
    raw_deliveries: int = 0
    live_events: int = 0
    outgoing_deliveries: int = 0
    quotes: int = 0
    media_files: int = 0

    def add(self, other: Erasure) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)


@dataclass
class _Traces:
    """What identifies the erased data elsewhere: ids, and the texts a copy would contain."""

    contacts: set[int] = field(default_factory=set)
    conversations: set[int] = field(default_factory=set)
    messages: set[int] = field(default_factory=set)
    mids: set[str] = field(default_factory=set)
    texts: set[str] = field(default_factory=set)

    def pattern(self) -> re.Pattern[str] | None:
        """What finds a quote of the erased content in other text: whole quotes only, longest
        first. A single plain word ("Thanks", "open", "Zelda") is left alone: it is everyone's
        word, and hunting it would rewrite notes and history that never quoted this person."""
        quotes = {t.strip() for t in self.texts}
        quotes = {q for q in quotes if len(q) >= MIN_QUOTE and not q.isalpha()}
        if not quotes:
            return None
        return re.compile(
            "|".join(_whole(q) for q in sorted(quotes, key=len, reverse=True)), re.IGNORECASE
        )


def _whole(quote: str) -> str:
    """A quote as a regular expression that does not match inside a longer word."""
    before = r"(?<!\w)" if re.match(r"\w", quote[0]) else ""
    after = r"(?!\w)" if re.match(r"\w", quote[-1]) else ""
    return before + re.escape(quote) + after


def erase_platform_user(
    platform_user_id: str, actor: Actor | Agent | None = None, reason: str = ""
) -> int:
    """Erase every contact that is this platform user, in any brand and channel, and the raw
    deliveries that mention them even where no contact was made. Returns the contacts erased."""
    contacts = db.session.scalars(
        select(Contact).where(Contact.platform_id == platform_user_id).order_by(Contact.id)
    ).all()
    for contact in contacts:
        erase_contact(contact, actor, reason=reason)
    _scrub_raw_deliveries(platform_user_id, set())
    db.session.flush()
    return len(contacts)


def erase_contact(
    contact: Contact, actor: Actor | Agent | None = None, reason: str = ""
) -> Erasure:
    """Erase one contact (see the module's docstring); the contact row stays, nameless, so its
    tickets and metrics keep their place. Audited as `contact.erased` with counts only."""
    now = utcnow()
    traces = _traces_of(contact)
    erasure = Erasure()
    erasure.edits = _count_edits(traces.messages)
    for message in db.session.scalars(select(Message).where(Message.id.in_(traces.messages))):
        _erase_content(message)
        erasure.messages += 1
    erasure.reactions = _erase_reactions(contact)
    erasure.media_files = copies.purge_messages(traces.messages)  # stored copies too
    erasure.pending_actions = _erase_pending(contact, traces)
    channel = db.session.get(Channel, contact.channel_id)
    erasure.raw_deliveries = _scrub_raw_deliveries(
        contact.platform_id, {channel.account_id} if channel else set()
    )
    pattern = traces.pattern()
    erasure.live_events = _erase_live_events(contact, traces, pattern)
    erasure.outgoing_deliveries = _scrub_outgoing(contact, traces, pattern)
    erasure.quotes = _scrub_quotes(contact, traces, pattern)
    contact.name = contact.username = contact.avatar_url = None
    contact.attributes, contact.notes = {}, None  # what agents kept about the person
    contact.profile_fetched_at = now  # fetched already: nobody fetches the profile back
    db.session.flush()
    for conversation_id in traces.conversations:
        refresh_preview(conversation_id)
    _mark_direct_previews(contact)
    record(actor, contact.brand_id, "contact.erased", "contact", contact.id,
           {"erased": [None, asdict(erasure)], **({"reason": [None, reason]} if reason else {})},
           label=f"contact #{contact.id}", at=now)  # fmt: skip
    db.session.flush()
    return erasure


# What identifies the contact's data ---------------------------------------------------------------


def _direct_conversations(contact: Contact) -> list[int]:
    return list(
        db.session.scalars(
            select(Conversation.id).where(
                Conversation.contact_id == contact.id,
                Conversation.kind == ConversationKind.DIRECT,
            )
        )
    )


def _traces_of(contact: Contact) -> _Traces:
    traces = _Traces(contacts={contact.id})
    direct = _direct_conversations(contact)
    messages = db.session.scalars(
        select(Message).where(
            or_(Message.contact_id == contact.id, Message.conversation_id.in_(direct))
        )
    ).all()
    traces.conversations = set(direct) | {m.conversation_id for m in messages}
    traces.messages = {m.id for m in messages}
    traces.mids = {m.mid for m in messages if m.mid}
    traces.texts = {v for v in (contact.name, contact.username, contact.avatar_url) if v}
    for message in messages:
        traces.texts.update(_strings(message.text, "text"))
        traces.texts.update(_strings(message.attachments))
        traces.texts.update(_strings(message.extra))
    traces.texts.update(
        text
        for text in db.session.scalars(
            select(MessageEdit.previous_text).where(MessageEdit.message_id.in_(traces.messages))
        )
        if text
    )
    traces.texts -= traces.mids  # platform ids of messages are not content
    return traces


def _strings(value: Any, key: str = "") -> Iterable[str]:
    """The texts inside a message's attachments and extras that are someone's content: links,
    titles, captions, words; not codes such as a type, a kind or a postback payload."""
    if isinstance(value, str):
        if "://" in value or " " in value.strip() or key in CONTENT_KEYS:
            yield value
    elif isinstance(value, dict):
        for name, item in value.items():
            yield from _strings(item, str(name))
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item, key)


def _count_edits(message_ids: set[int]) -> int:
    return len(
        db.session.scalars(
            select(MessageEdit.id).where(
                MessageEdit.message_id.in_(message_ids), MessageEdit.previous_text.is_not(None)
            )
        ).all()
    )


# Erasing ------------------------------------------------------------------------------------------


def _erase_reactions(contact: Contact) -> int:
    reactor = f"contact:{contact.id}"
    removed = rows_matched(
        delete(Reaction)
        .where(or_(Reaction.contact_id == contact.id, Reaction.reactor == reactor))
        .execution_options(synchronize_session=False)
    )
    db.session.execute(
        delete(ReactionRemoval)
        .where(ReactionRemoval.reactor == reactor)
        .execution_options(synchronize_session=False)
    )
    return removed


def _erase_pending(contact: Contact, traces: _Traces) -> int:
    """Actions waiting for a message of theirs, or sent by them: applied later, they would bring
    back what was erased."""
    waiting = db.session.scalars(
        select(PendingAction).where(PendingAction.channel_id == contact.channel_id)
    ).all()
    gone = [
        action
        for action in waiting
        if action.mid in traces.mids
        or _names_id(action.payload, contact.platform_id)
        or contact.platform_id in (action.event_key or "")
    ]
    for action in gone:
        db.session.delete(action)
    return len(gone)


def _names_id(value: Any, platform_id: str) -> bool:
    """Whether a JSON value holds the platform id anywhere, as text or as a number."""
    if isinstance(value, dict):
        return any(_names_id(item, platform_id) for item in value.values())
    if isinstance(value, list):
        return any(_names_id(item, platform_id) for item in value)
    if isinstance(value, str | int) and not isinstance(value, bool):
        return str(value) == platform_id
    return False


def _scrub_raw_deliveries(platform_id: str, account_ids: set[str]) -> int:
    """Drop the events that concern the person from the stored deliveries (those of the given
    business accounts, or of any account when none is given); a delivery left without events is
    deleted. An entry of the person's own business account (they connected one) is kept: it is
    the brand's channel, not the person's messages."""
    changed = 0
    rows = db.session.scalars(
        select(WebhookEvent).where(WebhookEvent.body.contains(platform_id, autoescape=True))
    ).all()
    for row in rows:
        if account_ids and not account_ids & set(row.account_ids or []):
            continue
        try:
            body = json.loads(row.body)
        except ValueError:
            continue
        touched, kept = _scrub_body(body, platform_id)
        if not touched:
            continue
        changed += 1
        if kept is None:
            db.session.delete(row)
        else:
            row.body = json.dumps(kept, ensure_ascii=False)
            row.error = None
    return changed


def _scrub_body(body: Any, platform_id: str) -> tuple[bool, Any]:
    """(whether anything was dropped, what is left or None when nothing is)."""
    if isinstance(body, dict) and isinstance(body.get("entry"), list):
        touched, entries = _scrub_entries(body["entry"], platform_id)
        return touched, ({**body, "entry": entries} if entries else None)
    if isinstance(body, list):
        touched, items = _scrub_entries(body, platform_id)
        return touched, (items or None)
    return False, body


def _scrub_entries(items: list, platform_id: str) -> tuple[bool, list]:
    touched, kept = False, []
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("entry"), list):
            dropped, rest = _scrub_body(item, platform_id)
        elif isinstance(item, dict) and str(item.get("id", "")) != platform_id:
            dropped, rest = _scrub_entry(item, platform_id)
        else:
            dropped, rest = False, item
        touched = touched or dropped
        if rest is not None:
            kept.append(rest)
    return touched, kept


def _scrub_entry(entry: dict, platform_id: str) -> tuple[bool, dict | None]:
    touched, had, left = False, False, 0
    for key in EVENT_LISTS:
        events = entry.get(key)
        if not isinstance(events, list):
            continue
        had = True
        kept = [event for event in events if not _names_id(event, platform_id)]
        touched = touched or len(kept) != len(events)
        entry = {**entry, key: kept}
        left += len(kept)
    return touched, (None if had and not left else entry)


def _erase_live_events(contact: Contact, traces: _Traces, pattern: re.Pattern[str] | None) -> int:
    """Live events are short-lived notices to open consoles: the ones naming the erased data
    go (the consoles reload what they show through the server anyway)."""
    gone = [
        event
        for event in db.session.scalars(
            select(LiveEvent).where(
                LiveEvent.brand_id == contact.brand_id, LiveEvent.created_at >= _since(contact)
            )
        )
        if _mentions(event.data, traces, pattern)
    ]
    for event in gone:
        db.session.delete(event)
    return len(gone)


def _since(contact: Contact) -> datetime:
    """Nothing written before the contact existed can be about them (an hour of margin for the
    clocks of other processes)."""
    return contact.created_at - timedelta(hours=1)


def _mentions(value: Any, traces: _Traces, pattern: re.Pattern[str] | None) -> bool:
    if isinstance(value, dict):
        for key, item in value.items():
            ids = getattr(traces, ID_KEYS[key]) if key in ID_KEYS else None
            if ids is not None and isinstance(item, int) and item in ids:
                return True
            if _mentions(item, traces, pattern):
                return True
        return False
    if isinstance(value, list):
        return any(_mentions(item, traces, pattern) for item in value)
    return isinstance(value, str) and (
        value in traces.mids or (pattern is not None and pattern.search(value) is not None)
    )


def _scrub_outgoing(contact: Contact, traces: _Traces, pattern: re.Pattern[str] | None) -> int:
    """A delivery log row stays (the receiver has it; the log says when it went), without the
    content of the erased messages."""
    changed = 0
    for delivery in db.session.scalars(
        select(WebhookDelivery).where(
            WebhookDelivery.brand_id == contact.brand_id,
            WebhookDelivery.created_at >= _since(contact),
        )
    ):
        payload = delivery.payload
        if not _mentions(payload, traces, pattern):
            continue
        cleaned = _scrubbed(payload, pattern)
        if isinstance(cleaned, dict) and cleaned.get("message_id") in traces.messages:
            cleaned = {**cleaned, "text": None, "attachments": []}
        if cleaned != payload:
            delivery.payload = cleaned
            changed += 1
    return changed


def _scrubbed(value: Any, pattern: re.Pattern[str] | None) -> Any:
    """A JSON value with every quote of erased content replaced by ERASED."""
    if pattern is None:
        return value
    if isinstance(value, dict):
        return {key: _scrubbed(item, pattern) for key, item in value.items()}
    if isinstance(value, list):
        return [_scrubbed(item, pattern) for item in value]
    if isinstance(value, str):
        return pattern.sub(ERASED, value)
    return value


def _scrub_quotes(contact: Contact, traces: _Traces, pattern: re.Pattern[str] | None) -> int:
    """Agents' own text stays, except where it quotes the erased content: in the notes,
    notifications and history of the tickets of the erased conversations, in the brand's cached
    API answers, and in earlier audit rows about the contact."""
    if pattern is None:
        return 0
    tickets = list(
        db.session.scalars(
            select(Ticket.id).where(Ticket.conversation_id.in_(traces.conversations))
        )
    )
    changed = 0
    for note in db.session.scalars(select(Note).where(Note.ticket_id.in_(tickets))):
        changed += _replace(note, "body", pattern.sub(ERASED, note.body))
    for notice in db.session.scalars(
        select(Notification).where(
            or_(
                Notification.ticket_id.in_(tickets),
                Notification.conversation_id.in_(traces.conversations),
            )
        )
    ):
        changed += _replace(notice, "body", pattern.sub(ERASED, notice.body))
    for event in db.session.scalars(select(TicketEvent).where(TicketEvent.ticket_id.in_(tickets))):
        changed += _replace(event, "data", _scrubbed(event.data, pattern))
    for key in db.session.scalars(
        select(IdempotencyKey).where(
            IdempotencyKey.brand_id == contact.brand_id,
            IdempotencyKey.body.is_not(None),
            IdempotencyKey.created_at >= _since(contact),
        )
    ):
        if pattern.search(key.body or ""):
            db.session.delete(key)  # a replay of that request is answered afresh
            changed += 1
    for audit in db.session.scalars(
        select(AuditEvent).where(
            AuditEvent.brand_id == contact.brand_id,
            AuditEvent.target_type == "contact",
            AuditEvent.target_id == contact.id,
        )
    ):
        changed += _replace(audit, "target_label", f"contact #{contact.id}")
        changed += _replace(audit, "changes", _scrubbed(audit.changes, pattern))
    return changed


def _replace(row: Any, name: str, value: Any) -> int:
    if getattr(row, name) == value:
        return 0
    setattr(row, name, value)
    return 1


def _mark_direct_previews(contact: Contact) -> None:
    for conversation in db.session.scalars(
        select(Conversation).where(
            Conversation.contact_id == contact.id, Conversation.kind == ConversationKind.DIRECT
        )
    ):
        if conversation.last_message_preview is not None:
            conversation.last_message_preview = ERASED
