"""One conversation of an account's history, as the Conversations API gives it, stored the way
webhooks store messages: read by the webhook parser (so kinds and attachments come out the same)
and written by the DM service that webhooks use, whose unique mid per channel keeps a message
once whichever of the two brings it first.

History is the past, not work: it opens no ticket and counts in no metric, except a customer
who is still waiting (the newest message is theirs and inside the reply window), who gets one
open ticket counted from when they started waiting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import update

from helpdesk.channels.models import Channel
from helpdesk.dm import service as dm
from helpdesk.dm.models import Conversation, Message
from helpdesk.errors import DuplicateMessage
from helpdesk.extensions import db
from helpdesk.inbox.folders import INBOX_STATES
from helpdesk.intake import instagram
from helpdesk.intake import service as intake
from helpdesk.intake.instagram import MalformedEvent
from helpdesk.media import copies
from helpdesk.tickets import service as tickets


@dataclass(frozen=True)
class HistoryMessage:
    """A message of the Conversations API, with the business's side already told apart."""

    id: str
    at: datetime
    from_business: bool
    customer_id: str
    customer_username: str | None
    raw: dict = field(compare=False)


def parse_time(value: Any) -> datetime | None:
    """`2026-07-12T19:11:07+0000` (Meta's form) or any ISO-8601 time."""
    if not isinstance(value, str) or not value:
        return None
    for reading in (
        lambda v: datetime.strptime(v, "%Y-%m-%dT%H:%M:%S%z"),
        lambda v: datetime.fromisoformat(v.replace("Z", "+00:00")),
    ):
        try:
            parsed = reading(value)
        except ValueError:
            continue
        return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


@dataclass(frozen=True)
class Business:
    """The channel's own account: the id webhooks carry and its username."""

    account_id: str
    username: str


def read_message(business: Business, raw: Any) -> HistoryMessage | None:
    """Who wrote it and to whom. The business is the channel's account, whichever of its ids
    Meta shows (matched by username too); the brand is never the contact. None when the message
    cannot be placed (no time, or no customer on either side)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
        return None
    at = parse_time(raw.get("created_time"))
    sender = raw.get("from") if isinstance(raw.get("from"), dict) else {}
    to = raw.get("to") if isinstance(raw.get("to"), dict) else {}
    receivers = [r for r in to.get("data") or [] if isinstance(r, dict)]
    if at is None or not sender.get("id"):
        return None
    if _is_business(business, sender):
        others = [r for r in receivers if r.get("id") and not _is_business(business, r)]
        if not others:
            return None
        customer, from_business = others[0], True
    else:
        customer, from_business = sender, False
    username = customer.get("username")
    return HistoryMessage(
        id=raw["id"],
        at=at,
        from_business=from_business,
        customer_id=str(customer["id"]),
        customer_username=username if isinstance(username, str) else None,
        raw=raw,
    )


def _is_business(business: Business, person: dict) -> bool:
    if str(person.get("id")) == business.account_id:
        return True
    username = person.get("username")
    return (
        bool(business.username)
        and isinstance(username, str)
        and (username.casefold() == business.username.casefold())
    )


def store_conversation(channel: Channel, messages: list[HistoryMessage], now: datetime) -> int:
    """Store what is not stored yet, oldest first (so a reply of the brand accepts the request
    the customer's first message opened, as it did live); returns how many were new."""
    stored = 0
    conversation_id: int | None = None
    for message in sorted(messages, key=lambda m: (m.at, m.id)):
        row, new = _store(channel, message)
        if row is not None:
            conversation_id = row.conversation_id
            stored += new
    if conversation_id is not None:
        _open_ticket_if_waiting(db.session.get(Conversation, conversation_id), messages, now)
    return stored


def _store(channel: Channel, message: HistoryMessage) -> tuple[Message | None, bool]:
    try:
        event = instagram.parse_event(channel.account_id, _as_webhook_event(channel, message))
    except MalformedEvent:
        return None, False
    try:
        if message.from_business:
            dm.get_or_create_contact(channel, message.customer_id, message.customer_username)
            row = dm.record_echo(
                channel,
                message.customer_id,
                message.id,
                message.at,
                text=event.text,
                kind=event.kind,
                attachments=event.attachments,
                extra={**event.extra, "history": True},
            )
        else:
            row = dm.receive_inbound(
                channel,
                dm.InboundMessage(
                    mid=message.id,
                    sender_id=message.customer_id,
                    sent_at=message.at,
                    kind=event.kind,
                    text=event.text,
                    attachments=event.attachments,
                    extra={**event.extra, "history": True},
                    sender_username=message.customer_username,
                ),
            )
    except DuplicateMessage as duplicate:
        return db.session.get(Message, duplicate.existing_id), False
    # A reaction, edit or read that a webhook brought before its message: applied now, as the
    # intake does when the message itself arrives.
    intake._after_new_message(channel, row)
    copies.note_inbound(row)  # history's media links expire like any other
    return row, True


def _as_webhook_event(channel: Channel, message: HistoryMessage) -> dict:
    """The message in the shape of a webhook delivery's event, for the webhook parser."""
    raw = message.raw
    body: dict[str, Any] = {"mid": message.id}
    if isinstance(raw.get("message"), str) and raw["message"]:
        body["text"] = raw["message"]
    attachments = _attachments(raw.get("attachments"))
    if attachments:
        body["attachments"] = attachments
    if "text" not in body and not attachments:
        body["is_unsupported"] = True
    if message.from_business:
        body["is_echo"] = True
    business, customer = {"id": channel.account_id}, {"id": message.customer_id}
    sender, recipient = (business, customer) if message.from_business else (customer, business)
    return {
        "sender": sender,
        "recipient": recipient,
        "timestamp": int(message.at.timestamp() * 1000),
        "message": body,
    }


def _attachments(value: Any) -> list[dict]:
    """The Conversations API's attachments (`image_data`, `video_data`, `file_url`) as the
    webhook's `{type, payload: {url}}`."""
    items = value.get("data") if isinstance(value, dict) else value
    result = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        if "type" in item and isinstance(item.get("payload"), dict):
            result.append(item)  # already the webhook's shape
        elif isinstance(item.get("image_data"), dict):
            result.append({"type": "image", "payload": {"url": item["image_data"].get("url")}})
        elif isinstance(item.get("video_data"), dict):
            result.append({"type": "video", "payload": {"url": item["video_data"].get("url")}})
        elif isinstance(item.get("file_url"), str):
            mime = str(item.get("mime_type") or "")
            kind = "audio" if mime.startswith("audio/") else "file"
            result.append({"type": kind, "payload": {"url": item["file_url"]}})
    return result


def _open_ticket_if_waiting(
    conversation: Conversation, messages: list[HistoryMessage], now: datetime
) -> None:
    """The newest message is the customer's, inside the reply window, and nobody answered: one
    open ticket from the first of their unanswered messages inside the window (the webhook
    would have opened it then). A ticket a webhook already opened is left as it is."""
    window_opens = now - dm.STANDARD_WINDOW
    waiting: list[HistoryMessage] = []
    for message in sorted(messages, key=lambda m: (m.at, m.id), reverse=True):
        if message.from_business or message.at < window_opens:
            break
        waiting.append(message)
    if not waiting or conversation.request_state not in INBOX_STATES:
        return
    current = tickets.current_ticket(conversation)
    if current is not None and current.active:
        return
    opened_at = waiting[-1].at
    ticket = tickets.open_ticket(
        conversation, opened_at=opened_at, now=now, text=waiting[0].raw.get("message")
    )
    # The ticket holds the waiting messages only: older history stays outside every metric.
    db.session.execute(
        update(Message)
        .where(
            Message.conversation_id == conversation.id,
            Message.ticket_id == ticket.id,
            Message.sent_at < opened_at,
        )
        .values(ticket_id=None)
        .execution_options(synchronize_session=False)
    )
    db.session.flush()
