"""The one definition of the inbox's folders, for the console, the REST API and the ticket rules.

A conversation is **in the inbox** (Primary or General, as its `folder` says) when it never was a
request or its request was accepted: only those get tickets. A pending request waits in the
**Requests** folder, a request matching the brand's hidden words in **Hidden** (admins only,
`dm/visibility.py`); declined and blocked threads are in no folder. The inbox an agent works
through is the three folders Primary, General and Requests together (`in_inbox_folders()`).
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, or_

from helpdesk.dm.models import Conversation, Folder, RequestState

FOLDERS = ("primary", "general", "requests", "hidden")
INBOX_STATES = (RequestState.NONE, RequestState.ACCEPTED)
INBOX_FOLDERS = ("primary", "general", "requests")


def folder_condition(folder: Folder | str) -> ColumnElement[bool]:
    """The conversations the folder `folder` shows."""
    folder = str(folder)
    if folder == "requests":
        return Conversation.request_state == RequestState.PENDING
    if folder == "hidden":
        return Conversation.request_state == RequestState.HIDDEN
    return and_(Conversation.folder == folder, Conversation.request_state.in_(INBOX_STATES))


def in_inbox_folders() -> ColumnElement[bool]:
    """Conversations in Primary, General or Requests: what the inbox lists, all folders together."""
    return or_(*(folder_condition(folder) for folder in INBOX_FOLDERS))


def folder_name(state: RequestState, folder: Folder | str) -> str | None:
    """The folder a conversation shows in, from its stored columns; None: declined or blocked."""
    if state is RequestState.PENDING:
        return "requests"
    if state is RequestState.HIDDEN:
        return "hidden"
    if state in INBOX_STATES and str(folder) in INBOX_FOLDERS:
        return str(folder)
    return None
