"""An account's history as the Conversations API serves it: the conversation list (paged, with
`paging.next` a full URL back here), a conversation's message ids (only the 20 newest, as Meta
answers) and each message's fields. `/_sim/history` seeds it; `/_sim/history/errors` makes these
endpoints fail or answer late through the simulator's own error rules (state.py).

Requests are recorded like the Send API's (endpoints `conversations`, `conversation`,
`history_message`), so a test can read their times and check the backfill's pace.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from flask import Flask, current_app, request

NEWEST_MESSAGES = 20  # Meta returns a conversation's 20 newest messages and no older ones
DEFAULT_PAGE_SIZE = 25
ENDPOINTS = ("conversations", "conversation", "history_message", "history")
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S+0000"


@dataclass
class SimMessage:
    id: str
    created_time: datetime
    from_business: bool
    text: str | None = None
    attachments: list[dict] = field(default_factory=list)


@dataclass
class SimConversation:
    id: str
    account_id: str
    customer_id: str
    customer_username: str
    messages: list[SimMessage] = field(default_factory=list)  # oldest first

    @property
    def updated_time(self) -> datetime:
        return max((m.created_time for m in self.messages), default=datetime.now(UTC))


@dataclass
class SimAccount:
    account_id: str
    username: str
    page_size: int = DEFAULT_PAGE_SIZE
    conversations: list[SimConversation] = field(default_factory=list)


@dataclass
class HistoryState:
    """Seeded accounts, found by token (or the only account when the token is not known)."""

    accounts: dict[str, SimAccount] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    conversations: dict[str, SimConversation] = field(default_factory=dict)
    messages: dict[str, tuple[SimConversation, SimMessage]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def clear(self) -> None:
        with self.lock:
            self.accounts.clear()
            self.tokens.clear()
            self.conversations.clear()
            self.messages.clear()


def _history() -> HistoryState:
    return current_app.extensions["graphsim_history"]


def _parse_time(value: Any) -> datetime:
    """Seconds since the epoch, a negative number of seconds before now, or ISO-8601."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value <= 0:
            return datetime.now(UTC) + timedelta(seconds=value)
        return datetime.fromtimestamp(value, tz=UTC)
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return datetime.now(UTC)


def seed(state: HistoryState, data: dict) -> dict:
    """Add an account's conversations; returns the ids given to conversations and messages."""
    account_id = str(data["account_id"])
    with state.lock:
        account = state.accounts.get(account_id) or SimAccount(
            account_id, str(data.get("username") or f"sim_business_{account_id[-4:]}")
        )
        state.accounts[account_id] = account
        if data.get("page_size"):
            account.page_size = max(1, int(data["page_size"]))
        if data.get("token"):
            state.tokens[str(data["token"])] = account_id
        seeded = []
        for item in data.get("conversations") or []:
            conversation = _conversation_of(account_id, item)
            account.conversations.append(conversation)
            state.conversations[conversation.id] = conversation
            for message in conversation.messages:
                state.messages[message.id] = (conversation, message)
            seeded.append(
                {"id": conversation.id, "message_ids": [m.id for m in conversation.messages]}
            )
    return {"account_id": account_id, "conversations": seeded}


def _conversation_of(account_id: str, item: dict) -> SimConversation:
    customer = item.get("customer") or {}
    customer_id = str(customer.get("id") or secrets.randbelow(10**16) + 10**16)
    conversation = SimConversation(
        id=str(item.get("id") or "aWdfZAG06" + secrets.token_urlsafe(18)),
        account_id=account_id,
        customer_id=customer_id,
        customer_username=str(customer.get("username") or f"customer_{customer_id[-4:]}"),
    )
    for raw in item.get("messages") or []:
        conversation.messages.append(
            SimMessage(
                id=str(raw.get("id") or "aWdfZAG1faXRlbTox" + secrets.token_urlsafe(24)),
                created_time=_parse_time(raw.get("created_time")),
                from_business=raw.get("from") == "business",
                text=raw.get("text"),
                attachments=list(raw.get("attachments") or []),
            )
        )
    conversation.messages.sort(key=lambda m: m.created_time)
    return conversation


# The Graph endpoints ------------------------------------------------------------------------------


def _server():
    from devtools.graphsim import server  # server imports this module: imported when called

    return server


def _start(endpoint: str, account_id: str | None) -> dict:
    """Record the request, then apply a seeded error or delay (raises the server's MetaError)."""
    server = _server()
    state = current_app.extensions["graphsim"]
    entry = state.record(server._recorded(endpoint, None, b""))
    entry["account_id"] = account_id
    if server._token() is None:
        raise _Refused(entry, server.MetaError(190, "An active access token must be used"))
    try:
        rule_endpoint = endpoint if state_has_rule(state, endpoint, account_id) else "history"
        server._apply_rule(state, rule_endpoint, account_id)
    except server.MetaError as exc:
        raise _Refused(entry, exc) from None
    return entry


def state_has_rule(state: Any, endpoint: str, account_id: str | None) -> bool:
    with state.lock:
        return any(rule.matches(endpoint, account_id) for rule in state.rules)


class _Refused(Exception):
    def __init__(self, entry: dict, error: Any):
        super().__init__(error.message)
        self.entry = entry
        self.error = error


def _refused(exc: _Refused):
    return _server()._answer(exc.entry, exc.error.body(), exc.error.status)


def _account_of_token(history: HistoryState) -> SimAccount | None:
    """The account of a token seeded here, else of one the simulated Instagram Login issued
    (oauth.py), else the only account seeded."""
    token = _server()._token() or ""
    login = current_app.extensions.get("graphsim_oauth")
    signed_in = getattr(login, "tokens", {}).get(token) if login is not None else None
    with history.lock:
        account_id = history.tokens.get(token)
        if account_id is None and signed_in in history.accounts:
            account_id = signed_in
        if account_id is None and len(history.accounts) == 1:
            account_id = next(iter(history.accounts))
        return history.accounts.get(account_id or "")


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime(TIME_FORMAT)


def conversations():
    """`GET /me/conversations?platform=instagram`, newest first, paged by an `after` cursor."""
    history = _history()
    account = _account_of_token(history)
    try:
        entry = _start("conversations", account.account_id if account else None)
        if account is None:
            raise _Refused(entry, _server().MetaError(190, "Invalid OAuth access token"))
        if request.args.get("platform") != "instagram":
            raise _Refused(entry, _server().MetaError(100, "(#100) platform must be instagram"))
    except _Refused as exc:
        return _refused(exc)
    with history.lock:
        items = sorted(account.conversations, key=lambda c: c.updated_time, reverse=True)
        start = int(request.args.get("after") or 0)
        size = int(request.args.get("limit") or account.page_size)
        page = items[start : start + size]
    body: dict[str, Any] = {
        "data": [{"id": c.id, "updated_time": _iso(c.updated_time)} for c in page],
        "paging": {"cursors": {"before": str(start), "after": str(start + len(page))}},
    }
    if start + len(page) < len(items):
        args = {k: v for k, v in request.args.items() if k != "after"}
        args["after"] = str(start + len(page))
        body["paging"]["next"] = f"{request.base_url}?{urlencode(args)}"
    return _server()._answer(entry, body)


def _dispatching(profile: Callable[..., Any]) -> Callable[..., Any]:
    """The server's catch-all profile rule also matches `/me/conversations` and the ids of
    conversations and messages: those are answered here, every other id as a profile."""

    def view(prefix: str = "", igsid: str = "") -> Any:
        if igsid == "conversations" and prefix.split("/")[-1] == "me":
            return conversations()
        history = _history()
        with history.lock:
            conversation = history.conversations.get(igsid)
            found = history.messages.get(igsid)
        if conversation is not None:
            return _conversation_messages(conversation)
        if found is not None:
            return _message(*found)
        return profile(prefix=prefix, igsid=igsid) if prefix else profile(igsid=igsid)

    return view


def _conversation_messages(conversation: SimConversation):
    try:
        entry = _start("conversation", conversation.account_id)
    except _Refused as exc:
        return _refused(exc)
    newest = sorted(conversation.messages, key=lambda m: m.created_time, reverse=True)
    newest = newest[:NEWEST_MESSAGES]
    body = {
        "messages": {
            "data": [{"id": m.id, "created_time": _iso(m.created_time)} for m in newest],
            "paging": {"cursors": {"before": "0", "after": str(len(newest))}},
        },
        "id": conversation.id,
    }
    return _server()._answer(entry, body)


def _message(conversation: SimConversation, message: SimMessage):
    try:
        entry = _start("history_message", conversation.account_id)
    except _Refused as exc:
        return _refused(exc)
    history = _history()
    with history.lock:
        business = history.accounts[conversation.account_id]
    us = {"id": business.account_id, "username": business.username}
    them = {"id": conversation.customer_id, "username": conversation.customer_username}
    sender, receiver = (us, them) if message.from_business else (them, us)
    full: dict[str, Any] = {
        "id": message.id,
        "created_time": _iso(message.created_time),
        "from": sender,
        "to": {"data": [receiver]},
        "message": message.text or "",
    }
    if message.attachments:
        full["attachments"] = {"data": message.attachments}
    wanted = [f for f in (request.args.get("fields") or "id").split(",") if f]
    return _server()._answer(entry, {k: v for k, v in full.items() if k in wanted or k == "id"})


# Control --------------------------------------------------------------------------------------

HOUR = 3600
DAY = 24 * HOUR


def demo_conversations(account_id: str) -> list[dict]:
    """A believable recent history for the demo: answered questions from the past days, and
    one customer still waiting for an answer (the backfill gives it an open ticket)."""
    tail = account_id[-4:]

    def chat(n: int, username: str, *turns: tuple[str, int, str]) -> dict:
        return {
            "customer": {"id": f"6120{tail}{n:08d}", "username": username},
            "messages": [{"from": w, "created_time": -ago, "text": t} for w, ago, t in turns],
        }

    return [
        chat(1, "maria.sews", ("customer", 5 * DAY, "Do you ship to Portugal?"),
             ("business", 5 * DAY - 900, "We do! Delivery takes 3 to 5 days."),
             ("customer", 5 * DAY - 1200, "Perfect, thank you")),
        chat(2, "tom_outdoors", ("customer", 3 * DAY, "Are the trail boots waterproof?"),
             ("business", 3 * DAY - 600, "Yes, fully waterproof up to the ankle.")),
        chat(3, "lena.k", ("customer", 2 * DAY, "Hi! I ordered last week"),
             ("business", 2 * DAY - 300, "Hi Lena, what is the order number?"),
             ("customer", 3 * HOUR, "It is 10422, it has not arrived yet")),
    ]  # fmt: skip


def demo_view():
    """A demo history for an account (e.g. one the simulated Instagram Login signs in)."""
    data = request.get_json(silent=True) or {}
    if not data.get("account_id"):
        return {"error": "account_id is required"}, 400
    account_id = str(data["account_id"])
    history = {**data, "conversations": demo_conversations(account_id)}
    return seed(_history(), history), 201


def seed_view():
    data = request.get_json(silent=True) or {}
    if not data.get("account_id"):
        return {"error": "account_id is required"}, 400
    try:
        return seed(_history(), data), 201
    except (TypeError, ValueError) as exc:
        return {"error": f"could not read the history: {exc}"}, 400


def clear_view():
    _history().clear()
    return {"ok": True}


def add_error_view():
    """Like `/_sim/errors`, for the history endpoints (`history`: any of them)."""
    from devtools.graphsim import control

    data = request.get_json(silent=True) or {}
    data.setdefault("endpoint", "history")
    try:
        rule = control._rule_of(data)
    except (TypeError, ValueError):
        return {"error": "code, subcode, status, times and delay_ms are integers"}, 400
    if rule.endpoint not in ENDPOINTS:
        return {"error": f"endpoint is one of {', '.join(ENDPOINTS)}"}, 400
    if rule.code is None and not rule.delay_ms:
        return {"error": "give a code to fail with, a delay_ms, or both"}, 400
    state = current_app.extensions["graphsim"]
    with state.lock:
        state.rules.append(rule)
    return {"rule": asdict(rule)}, 201


def register(app: Flask) -> None:
    """Add this module's routes to a simulator app."""
    app.extensions["graphsim_history"] = HistoryState()
    for endpoint in ("profile", "profile_bare"):
        app.view_functions[endpoint] = _dispatching(app.view_functions[endpoint])
    app.add_url_rule("/_sim/history", "sim_history_seed", seed_view, methods=["POST"])
    app.add_url_rule("/_sim/history", "sim_history_clear", clear_view, methods=["DELETE"])
    app.add_url_rule("/_sim/history/errors", "sim_history_errors", add_error_view, methods=["POST"])
    app.add_url_rule("/_sim/history/demo", "sim_history_demo", demo_view, methods=["POST"])
