"""Search a brand's messages and contacts. PostgreSQL matches words with its full-text index;
SQLite (development and tests) falls back to LIKE, so results agree on plain words."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, exists, func, or_, select, true

from helpdesk.accounts.models import Role
from helpdesk.dm.models import Contact, Conversation, Message, RequestState
from helpdesk.dm.visibility import visible_states
from helpdesk.extensions import db
from helpdesk.search.matching import contains
from helpdesk.search.models import FTS_CONFIG, message_tsvector

MAX_QUERY_CHARS = 200
RESULT_LIMIT = 50


@dataclass
class MessageHit:
    message: Message
    conversation: Conversation
    contact: Contact | None


@dataclass
class SearchResults:
    query: str
    messages: list[MessageHit]
    contacts: list[tuple[Contact, int | None]]  # the contact and its latest conversation's id


def _text_matches(query: str):
    if db.session.get_bind().dialect.name == "postgresql":
        return message_tsvector().op("@@")(func.plainto_tsquery(FTS_CONFIG, query))
    return and_(*(contains(Message.text, word) for word in query.split()))


SEARCHED_STATES = (
    RequestState.NONE,
    RequestState.ACCEPTED,
    RequestState.PENDING,
    RequestState.DECLINED,
    RequestState.HIDDEN,
)


def search(brand_id: int, query: str, role: Role, limit: int = RESULT_LIMIT) -> SearchResults:
    """Messages containing every word (newest first) and contacts by username or name.

    Blocked contacts' messages and, below the role that sees hidden requests, hidden requests are
    left out, as in the inbox; so is a contact known only from a hidden request.
    """
    query = " ".join((query or "").split())[:MAX_QUERY_CHARS]
    if not query:
        return SearchResults(query="", messages=[], contacts=[])
    states = visible_states(role, SEARCHED_STATES)
    hits = db.session.execute(
        select(Message, Conversation, Contact)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .outerjoin(Contact, Contact.id == Message.contact_id)
        .where(
            Message.brand_id == brand_id,
            Message.suppressed.is_(False),
            Message.text.is_not(None),
            Conversation.request_state.in_(states),
            _text_matches(query),
        )
        .order_by(Message.sent_at.desc().nulls_last(), Message.id.desc())
        .limit(limit)
    ).all()
    latest = (
        select(func.max(Conversation.id))
        .where(Conversation.contact_id == Contact.id, Conversation.request_state.in_(states))
        .correlate(Contact)
        .scalar_subquery()
    )
    withheld = [state for state in SEARCHED_STATES if state not in states]
    withheld_thread = (
        select(Conversation.id)
        .where(Conversation.contact_id == Contact.id, Conversation.request_state.in_(withheld))
        .correlate(Contact)
    )
    known_here = or_(latest.is_not(None), ~exists(withheld_thread)) if withheld else true()
    words = query.replace("@", " ").split()
    contacts = (
        []
        if not words
        else db.session.execute(
            select(Contact, latest)
            .where(
                Contact.brand_id == brand_id,
                Contact.blocked.is_(False),
                known_here,
                *(or_(contains(Contact.username, w), contains(Contact.name, w)) for w in words),
            )
            .order_by(func.lower(Contact.username))
            .limit(limit)
        ).all()
    )
    return SearchResults(
        query=query,
        messages=[MessageHit(m, c, contact) for m, c, contact in hits],
        contacts=[(contact, conversation_id) for contact, conversation_id in contacts],
    )
