"""Meta's Send API as the delivery calls it: one client per process, a POST whose failure is
sorted into what may be resent and what may not, and a message's recipient and parts.

A send ends in one of the outcomes below: `service.deliver` and `reactions.send_reaction` answer
which."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime

import httpx

from helpdesk.dm.models import Contact, Conversation, ConversationKind, Message, MessageStatus
from helpdesk.extensions import db
from helpdesk.media import uploads

log = logging.getLogger(__name__)

SENT = "sent"
RETRY = "retry"
FAILED = "failed"
SKIPPED = "skipped"
UNCONFIRMED = "unconfirmed"  # the request may have reached Meta: only an echo can tell
WAITING = "waiting"  # the channel needs a reconnect: the message stays queued until then
WAITING_REASON = "Instagram is disconnected; an admin must reconnect"

RETRYABLE_CODES = frozenset({1, 2, 4, 17, 341, 613})
PERMANENT_CODES = frozenset({10, 100, 551})  # 190, 200-299 and 10 off-window: refuses_access
DEFAULT_TIMEOUT_SECONDS = 10.0
_clients: dict[int, httpx.Client] = {}
TOKEN_REASON = "The channel's access token is invalid or expired: reconnect the account"
ACCESS_REASON = "Instagram no longer lets this account send: an admin must reconnect it"
WINDOW_SUBCODE = 2018278  # code 10 with this subcode: the reply window closed, not the token
REASONS = {
    10: "Outside the reply window: Instagram refused the message",
    551: "This person isn't available right now",
}


@dataclass(frozen=True)
class SendError:
    """Why a Send API call gave no message id, and what that allows: a resend or none."""

    code: str
    reason: str
    retryable: bool = False
    ambiguous: bool = False
    bad_token: bool = False  # the platform refused the account's access: it needs a reconnect


def graph_client() -> httpx.Client:
    """One client per process, so sends reuse its connections and TLS context (building a client
    costs about 20 ms of CPU). Keyed by process id: a forked worker builds its own."""
    pid = os.getpid()
    client = _clients.get(pid)
    if client is None:
        client = _clients[pid] = httpx.Client(timeout=DEFAULT_TIMEOUT_SECONDS)
    return client


def post(url: str, token: str, body: dict, timeout: float) -> dict | SendError:
    try:
        response = graph_client().post(
            url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=timeout
        )
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        return SendError(
            "network", f"Instagram could not be reached ({_name(exc)})", retryable=True
        )
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        return SendError("config", f"GRAPH_API_BASE is not a usable URL ({_name(exc)})")
    except httpx.TransportError as exc:
        # Sent, or partly sent, with no answer: Meta may have accepted it.
        return SendError("unconfirmed", f"no answer from Instagram ({_name(exc)})", ambiguous=True)
    if response.is_success:
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if isinstance(answer, dict):
            return answer
        return SendError("unconfirmed", "Instagram's answer was not JSON", ambiguous=True)
    return _error_of(response)


def _name(exc: Exception) -> str:
    return type(exc).__name__


def _error_of(response: httpx.Response) -> SendError:
    """Meta's `{"error": {"code", "message", ...}}` into what the agent sees and what may retry."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    try:
        code = int(error["code"])
    except (KeyError, TypeError, ValueError):
        code = None
    detail = str(error.get("message") or f"HTTP {status}")
    if code is not None and refuses_access(code, error.get("error_subcode"), detail):
        reason = TOKEN_REASON if code == 190 else f"{ACCESS_REASON} (code {code})"
        return SendError(str(code), reason, bad_token=True)
    if code is None:
        if status >= 500 or status == 429:
            return SendError(f"http_{status}", f"Instagram answered HTTP {status}", retryable=True)
        return SendError(f"http_{status}", f"Instagram refused the message (HTTP {status})")
    if code in PERMANENT_CODES:
        reason = REASONS.get(code) or f"Instagram refused the message as invalid: {detail}"
        return SendError(str(code), reason)
    if code in RETRYABLE_CODES or status >= 500:
        return SendError(
            str(code), f"Instagram is busy or limiting sends: {detail}", retryable=True
        )
    return SendError(str(code), f"Instagram refused the message: {detail} (code {code})")


def refuses_access(code: int, subcode: object, message: str) -> bool:
    """Codes that say the token or the app's permission is gone (190 with any subcode, 10, and
    200 to 299), so nothing sent with it can work until an admin reconnects the account. Code 10
    also answers a message outside the reply window: that one is about the conversation only."""
    if code == 10:
        outside_window = (
            str(subcode) == str(WINDOW_SUBCODE)
            or "outside of allowed window" in (message or "").lower()
        )
        return not outside_window
    return code == 190 or 200 <= code <= 299


def recipient_of(conversation: Conversation) -> dict:
    """A direct thread goes to the contact; a group thread to its platform thread id."""
    if conversation.kind is ConversationKind.GROUP:
        return {"thread_key": conversation.thread_key.removeprefix("group:")}
    contact = db.session.get(Contact, conversation.contact_id)
    return {"id": contact.platform_id}


def sent_mids(message: Message) -> list[str]:
    """Mids of the parts already accepted: `extra["mids"]` for several parts, else the mid."""
    mids = (message.extra or {}).get("mids")
    if mids:
        return list(mids)
    return [message.mid] if message.mid else []


def with_quick_replies(content: dict, message: Message) -> dict:
    """A text part carries the message's quick replies (a survey's buttons), as the Send API
    expects them beside the text: `[{content_type: "text", title, payload}]`."""
    buttons = (message.extra or {}).get("quick_replies")
    if not buttons or "text" not in content:
        return content
    return {**content, "quick_replies": [dict(button) for button in buttons]}


def attachment_url(attachment: dict) -> str | None:
    """Where Meta fetches an attachment: an agent's upload at its signed link (made now, so it
    lives 24 hours from the send), else the URL the message was given."""
    if attachment.get("media_id") is not None:
        return uploads.signed_url(int(attachment["media_id"]))
    return attachment.get("url") or (attachment.get("payload") or {}).get("url")


def mark_sent(message: Message, now: datetime) -> None:
    message.status = MessageStatus.SENT
    message.sent_at = now
    message.error = None
    message.error_code = None


def fail(message: Message, code: str, reason: str) -> None:
    message.status = MessageStatus.FAILED
    message.error_code = code[:32]
    message.error = reason
