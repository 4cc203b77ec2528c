"""Message requests and blocking: what moves a thread into the inbox, out of it, or between
folders."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update

from helpdesk.dm.conversations import OPEN_REQUEST_STATES
from helpdesk.dm.models import Contact, Conversation, Folder, RequestState
from helpdesk.errors import InvalidState, ValidationError
from helpdesk.extensions import db
from helpdesk.live import events as live
from helpdesk.types import utcnow


def _accept(conversation: Conversation) -> None:
    conversation.request_state = RequestState.ACCEPTED
    conversation.folder = Folder.PRIMARY
    live.conversation_updated(conversation)


def accept_request(conversation: Conversation) -> Conversation:
    if conversation.request_state not in OPEN_REQUEST_STATES:
        raise InvalidState("only a pending or hidden request can be accepted")
    _accept(conversation)
    db.session.flush()
    return conversation


def decline_request(conversation: Conversation) -> Conversation:
    """Out of the inbox, no ticket; kept for audit, and a new message makes a new request."""
    if conversation.request_state not in OPEN_REQUEST_STATES:
        raise InvalidState("only a pending or hidden request can be declined")
    conversation.request_state = RequestState.DECLINED
    live.conversation_updated(conversation)
    db.session.flush()
    return conversation


def block_request(conversation: Conversation) -> Conversation:
    if conversation.contact_id is None:
        raise InvalidState("a group request cannot be blocked; block its members")
    block_contact(db.session.get(Contact, conversation.contact_id))
    return conversation


def block_contact(contact: Contact, now: datetime | None = None) -> Contact:
    """Their future messages are stored as blocked and never shown in an inbox."""
    contact.blocked = True
    contact.blocked_at = now or utcnow()
    db.session.execute(
        update(Conversation)
        .where(Conversation.contact_id == contact.id)
        .values(request_state=RequestState.BLOCKED, folder=Folder.REQUESTS)
        .execution_options(synchronize_session="fetch")
    )
    _announce_conversations_of(contact)
    db.session.flush()
    return contact


def unblock_contact(contact: Contact) -> Contact:
    contact.blocked = False
    contact.blocked_at = None
    db.session.execute(
        update(Conversation)
        .where(
            Conversation.contact_id == contact.id,
            Conversation.request_state == RequestState.BLOCKED,
        )
        .values(request_state=RequestState.DECLINED)
        .execution_options(synchronize_session="fetch")
    )
    _announce_conversations_of(contact)
    db.session.flush()
    return contact


def _announce_conversations_of(contact: Contact) -> None:
    """Blocking or unblocking moves every conversation of the contact in or out of the inbox."""
    for conversation in db.session.scalars(
        select(Conversation).where(Conversation.contact_id == contact.id)
    ):
        live.conversation_updated(conversation)


def move_to_folder(conversation: Conversation, folder: Folder | str) -> Conversation:
    try:
        folder = Folder(folder)
    except ValueError:
        raise ValidationError(f"unknown folder {str(folder)[:40]!r}") from None
    if conversation.request_state in OPEN_REQUEST_STATES or folder is Folder.REQUESTS:
        raise InvalidState("requests move to the inbox by being accepted")
    conversation.folder = folder
    live.conversation_updated(conversation)
    db.session.flush()
    return conversation
