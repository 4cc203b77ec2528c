"""The full-text index on message text: PostgreSQL only (GIN over to_tsvector('simple', text));
other databases search with LIKE and need no index."""

from __future__ import annotations

from sqlalchemy import Index, func, text

from helpdesk.dm.models import Message

# A text fragment: index and queries both read `to_tsvector('simple'::regconfig, text)`.
FTS_CONFIG = text("'simple'::regconfig")


def message_tsvector():
    """The indexed expression; queries must use exactly this one for the index to serve them."""
    return func.to_tsvector(FTS_CONFIG, Message.text)


messages_text_fts = Index(
    "ix_messages_text_fts", message_tsvector(), postgresql_using="gin"
).ddl_if(dialect="postgresql")
