"""Search a brand's messages and contacts. PostgreSQL matches words with its full-text index;
SQLite (development and tests) falls back to LIKE, so results agree on plain words."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, func, or_, select

from helpdesk.dm.models import Contact, Conversation, Message, RequestState
from helpdesk.extensions import db
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


def _escape_like(text: str) -> str:
    return text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _like(column, word: str):
    return func.lower(column).like(f"%{_escape_like(word)}%", escape="\\")


def _text_matches(query: str):
    if db.session.get_bind().dialect.name == "postgresql":
        return message_tsvector().op("@@")(func.plainto_tsquery(FTS_CONFIG, query))
    return and_(*(_like(Message.text, word) for word in query.split()))


def _visible_states(include_hidden: bool) -> tuple[RequestState, ...]:
    states = (RequestState.NONE, RequestState.ACCEPTED, RequestState.PENDING, RequestState.DECLINED)
    return (*states, RequestState.HIDDEN) if include_hidden else states


def search(
    brand_id: int, query: str, include_hidden: bool = False, limit: int = RESULT_LIMIT
) -> SearchResults:
    """Messages containing every word (newest first) and contacts by username or name.

    Blocked contacts' messages and, below admin, hidden requests are left out, as in the inbox.
    """
    query = " ".join((query or "").split())[:MAX_QUERY_CHARS]
    if not query:
        return SearchResults(query="", messages=[], contacts=[])
    states = _visible_states(include_hidden)
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
    words = query.replace("@", " ").split()
    contacts = (
        []
        if not words
        else db.session.execute(
            select(Contact, latest)
            .where(
                Contact.brand_id == brand_id,
                Contact.blocked.is_(False),
                and_(*(or_(_like(Contact.username, w), _like(Contact.name, w)) for w in words)),
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
