"""Sending queued messages and brand reactions through Meta's Send API, at most once per message.

Unlike other services, `deliver` commits: the attempt must be durable before the HTTP call, so a
worker killed mid-send leaves a trace that stops a second send, and no transaction may stay open
(holding SQLite's write lock) while Meta answers.

How an outbound message moves:

    queued --claim--> sending --message id--> sent
                              --1, 2, 4, 17, 341, 613, 5xx, not reached--> queued (retried)
                              --10, 100, 190, 200, 551, anything else--> failed
                              --no answer once the request was out--> sending (left to the echo)
    sending --echo with the same text (reconcile_echo)--> sent
    sending for 10 minutes (sweep_stuck_deliveries) --> failed, never resent automatically
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from flask import current_app
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from helpdesk.channels.models import Channel, ChannelKind
from helpdesk.dm import service as dm
from helpdesk.dm.models import (
    Contact,
    Conversation,
    ConversationKind,
    Direction,
    Message,
    MessageStatus,
    RequestState,
)
from helpdesk.errors import ReplyWindowClosed
from helpdesk.extensions import db
from helpdesk.types import utcnow

log = logging.getLogger(__name__)

SENT = "sent"
RETRY = "retry"
FAILED = "failed"
SKIPPED = "skipped"
UNCONFIRMED = "unconfirmed"  # the request may have reached Meta: only an echo can tell

RETRYABLE_CODES = frozenset({1, 2, 4, 17, 341, 613})
PERMANENT_CODES = frozenset({10, 100, 190, 200, 551})
MAX_ATTEMPTS = 6
DEFAULT_TIMEOUT_SECONDS = 10.0
_clients: dict[int, httpx.Client] = {}
RECONCILE_WINDOW = timedelta(minutes=10)
STUCK_AFTER = timedelta(minutes=10)
REQUEUE_AFTER = timedelta(minutes=1)
REQUEUE_BATCH = 500
UNCONFIRMED_ERROR = "Delivery could not be confirmed; check Instagram before resending"
TOKEN_REASON = "The channel's access token is invalid or expired: reconnect the account"
REASONS = {
    10: "Outside the reply window: Instagram refused the message",
    190: TOKEN_REASON,
    200: "Instagram does not allow this account to send it: check the channel's permissions",
    551: "This person isn't available right now",
}
INSTAGRAM_REACTION = "love"  # the only reaction the Send API takes on Instagram


@dataclass(frozen=True)
class SendError:
    """Why a Send API call gave no message id, and what that allows: a resend or none."""

    code: str
    reason: str
    retryable: bool = False
    ambiguous: bool = False
    bad_token: bool = False


@dataclass(frozen=True)
class _Plan:
    """Everything the HTTP calls need, read before them so no row is touched while Meta answers."""

    url: str
    token: str
    bodies: list[dict]
    done: int
    timeout: float


def backoff_seconds(attempt: int) -> int:
    """2, 4, 8, 16, 32 seconds after attempts 1 to 5."""
    return 2 ** max(1, attempt)


# Delivery ---------------------------------------------------------------------------------------


def deliver(message_id: int, now: datetime | None = None) -> str:
    """Send a queued outbound message; returns sent, retry, failed, unconfirmed or skipped.

    Only a `queued` message is claimed (a retry puts it back to `queued`); a redelivered task
    finds `sending` and does nothing, since the first attempt may have reached Meta.
    """
    now = now or utcnow()
    if not _claim(message_id, now):
        status = db.session.scalar(select(Message.status).where(Message.id == message_id))
        db.session.commit()
        log.info("message %s not delivered: its status is %s", message_id, status)
        return SKIPPED
    db.session.commit()

    try:
        plan = _plan(message_id, now)
        db.session.commit()
    except Exception:
        _release(message_id)
        raise
    if isinstance(plan, str):
        return plan

    for index in range(plan.done, len(plan.bodies)):
        result = _post(plan.url, plan.token, plan.bodies[index], plan.timeout)
        if isinstance(result, dict) and not result.get("message_id"):
            result = SendError(
                "unconfirmed", "Instagram answered without a message id", ambiguous=True
            )
        if isinstance(result, SendError):
            outcome = _record_error(message_id, result, index, len(plan.bodies))
            db.session.commit()
            return outcome
        _record_part(message_id, str(result["message_id"]), len(plan.bodies), now)
        db.session.commit()
    log.info("message %s sent in %d part(s)", message_id, len(plan.bodies) - plan.done)
    return SENT


def _claim(message_id: int, now: datetime) -> bool:
    """A conditional update, so two workers given the same message cannot both send it."""
    claimed = db.session.execute(
        update(Message)
        .where(
            Message.id == message_id,
            Message.direction == Direction.OUTBOUND,
            Message.status == MessageStatus.QUEUED,
        )
        .values(
            status=MessageStatus.SENDING,
            delivery_attempts=Message.delivery_attempts + 1,
            last_attempt_at=now,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    return claimed == 1


def _release(message_id: int) -> None:
    """Nothing went out yet, so the message may safely go back to `queued` for a later try."""
    db.session.rollback()
    db.session.execute(
        update(Message)
        .where(Message.id == message_id, Message.status == MessageStatus.SENDING)
        .values(status=MessageStatus.QUEUED)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def _plan(message_id: int, now: datetime) -> _Plan | str:
    """Check what may have changed since the message was queued, then prepare the calls."""
    message = db.session.get(Message, message_id)
    conversation = db.session.get(Conversation, message.conversation_id)
    channel = db.session.get(Channel, message.channel_id)
    if channel.kind is not ChannelKind.INSTAGRAM:
        # The project's own `api` channel has no Send API: its outgoing webhooks carry replies.
        _mark_sent(message, now)
        return SENT
    if conversation.request_state is RequestState.BLOCKED:
        _fail(message, "contact_blocked", "Not sent: the contact is blocked")
        return FAILED
    human = not message.is_automated
    try:
        dm.check_reply_window(conversation, now, human=human)
    except ReplyWindowClosed as closed:
        _fail(message, closed.code, f"Not sent: {closed.message}")
        return FAILED
    message.human_agent_tag = human and dm.needs_human_agent_tag(conversation, now)
    if channel.needs_new_token or channel.access_token_encrypted is None:
        _fail(message, "190", TOKEN_REASON)
        return FAILED
    try:
        token = channel.access_token
    except ValueError:
        _fail(message, "token_unreadable", "The channel's access token cannot be read: reconnect")
        return FAILED
    bodies = _bodies(message, conversation)
    done = len(_sent_mids(message))
    if not bodies:
        _fail(message, "empty", "Not sent: the message has neither text nor attachments")
        return FAILED
    if done >= len(bodies):
        _mark_sent(message, now)  # every part was confirmed by its echo meanwhile
        return SENT
    base = current_app.config["GRAPH_API_BASE"].rstrip("/")
    return _Plan(
        url=f"{base}/{channel.account_id}/messages",
        token=token,
        bodies=bodies,
        done=done,
        timeout=float(current_app.config.get("GRAPH_API_TIMEOUT", DEFAULT_TIMEOUT_SECONDS)),
    )


def _recipient(conversation: Conversation) -> dict:
    """A direct thread goes to the contact; a group thread to its platform thread id."""
    if conversation.kind is ConversationKind.GROUP:
        return {"thread_key": conversation.thread_key.removeprefix("group:")}
    contact = db.session.get(Contact, conversation.contact_id)
    return {"id": contact.platform_id}


def _bodies(message: Message, conversation: Conversation) -> list[dict]:
    """One Send API call per part: the text first, then each attachment."""
    contents: list[dict] = [{"text": message.text}] if message.text else []
    for attachment in message.attachments or []:
        url = attachment.get("url") or (attachment.get("payload") or {}).get("url")
        contents.append({"attachment": {"type": attachment["type"], "payload": {"url": url}}})
    recipient = _recipient(conversation)
    bodies = []
    for index, content in enumerate(contents):
        body: dict = {"recipient": recipient, "message": content}
        if index == 0 and message.reply_to_mid:
            body["reply_to"] = {"mid": message.reply_to_mid}
        if message.human_agent_tag:
            body["messaging_type"] = "MESSAGE_TAG"
            body["tag"] = "HUMAN_AGENT"
        bodies.append(body)
    return bodies


def _sent_mids(message: Message) -> list[str]:
    """Mids of the parts already accepted: `extra["mids"]` for several parts, else the mid."""
    mids = (message.extra or {}).get("mids")
    if mids:
        return list(mids)
    return [message.mid] if message.mid else []


def graph_client() -> httpx.Client:
    """One client per process, so sends reuse its connections and TLS context (building a client
    costs about 20 ms of CPU). Keyed by process id: a forked worker builds its own."""
    pid = os.getpid()
    client = _clients.get(pid)
    if client is None:
        client = _clients[pid] = httpx.Client(timeout=DEFAULT_TIMEOUT_SECONDS)
    return client


def _post(url: str, token: str, body: dict, timeout: float) -> dict | SendError:
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
    if code is None:
        if status >= 500 or status == 429:
            return SendError(f"http_{status}", f"Instagram answered HTTP {status}", retryable=True)
        return SendError(f"http_{status}", f"Instagram refused the message (HTTP {status})")
    if code in PERMANENT_CODES:
        reason = REASONS.get(code) or f"Instagram refused the message as invalid: {detail}"
        return SendError(str(code), reason, bad_token=code == 190)
    if code in RETRYABLE_CODES or status >= 500:
        return SendError(
            str(code), f"Instagram is busy or limiting sends: {detail}", retryable=True
        )
    return SendError(str(code), f"Instagram refused the message: {detail} (code {code})")


def _record_part(message_id: int, mid: str, total: int, now: datetime) -> None:
    """Keep each accepted part at once, so a retry resumes after it instead of repeating it."""
    message = db.session.get(Message, message_id)
    mids = _sent_mids(message)
    if mid not in mids:
        mids.append(mid)
    if message.mid is None:
        message.mid = mid
    if total > 1:
        message.extra = {**(message.extra or {}), "mids": mids}
    if len(mids) >= total:
        _mark_sent(message, now)
    try:
        db.session.flush()
    except IntegrityError:
        # The intake stored the echo as a message of its own first: that row holds the mid.
        db.session.rollback()
        message = db.session.get(Message, message_id)
        message.extra = {**(message.extra or {}), "mids": mids, "mid_held_by_echo": mid}
        if len(mids) >= total:
            _mark_sent(message, now)
        log.warning("message %s: mid %s is already stored for another message", message_id, mid)
        db.session.flush()


def _record_error(message_id: int, error: SendError, index: int, total: int) -> str:
    message = db.session.get(Message, message_id)
    reason = error.reason + (f" (part {index + 1} of {total})" if index > 0 else "")
    if error.ambiguous:
        message.error_code = UNCONFIRMED
        message.error = f"Waiting for Instagram to confirm: {reason}"
        log.warning("message %s unconfirmed: %s", message_id, reason)
        return UNCONFIRMED
    if error.bad_token:
        db.session.get(Channel, message.channel_id).needs_new_token = True
    if error.retryable and message.delivery_attempts < MAX_ATTEMPTS:
        message.status = MessageStatus.QUEUED
        message.error_code = error.code
        message.error = f"retrying: {reason}"
        log.info("message %s will be retried: %s", message_id, reason)
        return RETRY
    if error.retryable:
        reason = f"{reason}; gave up after {message.delivery_attempts} attempts"
    _fail(message, error.code, reason)
    log.info("message %s failed: %s", message_id, reason)
    return FAILED


def _mark_sent(message: Message, now: datetime) -> None:
    message.status = MessageStatus.SENT
    message.sent_at = now
    message.error = None
    message.error_code = None


def _fail(message: Message, code: str, reason: str) -> None:
    message.status = MessageStatus.FAILED
    message.error_code = code[:32]
    message.error = reason


# Reconciliation and sweeps --------------------------------------------------------------------


def reconcile_echo(
    channel: Channel,
    mid: str,
    recipient_platform_id: str,
    text: str | None,
    sent_at: datetime,
) -> Message | None:
    """An echo whose mid is unknown may be our own send whose answer never came back.

    Looks at this channel's outbound messages to that recipient attempted within 10 minutes
    before the echo: a mid already held as a later part returns its message; otherwise the
    oldest message still `sending` (or `queued` for a retry) whose next part is this echo (same
    text, or an attachment) takes the mid, and is `sent` once every part is confirmed. Returns
    None when the echo is not ours (the brand wrote from the Instagram app). Flushes.
    """
    candidates = db.session.scalars(
        select(Message)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(
            Message.channel_id == channel.id,
            Message.direction == Direction.OUTBOUND,
            Conversation.thread_key.in_(
                [f"direct:{recipient_platform_id}", f"group:{recipient_platform_id}"]
            ),
            Message.status.in_([MessageStatus.SENDING, MessageStatus.QUEUED, MessageStatus.SENT]),
            Message.last_attempt_at >= sent_at - RECONCILE_WINDOW,
        )
        .order_by(Message.last_attempt_at, Message.id)
    ).all()
    for message in candidates:
        if mid in _sent_mids(message):
            return message
    for message in candidates:
        awaiting = message.status in (MessageStatus.SENDING, MessageStatus.QUEUED)
        if awaiting and message.delivery_attempts > 0 and _is_next_part(message, text):
            return _attach_echo(message, mid, sent_at)
    return None


def _parts(message: Message) -> int:
    return (1 if message.text else 0) + len(message.attachments or [])


def _is_next_part(message: Message, echo_text: str | None) -> bool:
    """Parts go out in order, text first: an echo can only be the first part not yet known."""
    known = len(_sent_mids(message))
    if known >= _parts(message):
        return False
    wanted = (echo_text or "").strip()
    if wanted:
        return known == 0 and (message.text or "").strip() == wanted
    return bool(message.attachments) and (known > 0 or not message.text)


def _attach_echo(message: Message, mid: str, sent_at: datetime) -> Message:
    mids = [*_sent_mids(message), mid]
    if message.mid is None:
        message.mid = mid
    if _parts(message) > 1:
        message.extra = {**(message.extra or {}), "mids": mids}
    if len(mids) >= _parts(message):
        message.status = MessageStatus.SENT
        message.sent_at = sent_at
        message.error = None
        message.error_code = None
    db.session.flush()
    log.info("message %s: echo %s confirms part %d", message.id, mid, len(mids))
    return message


def sweep_stuck_deliveries(now: datetime | None = None, older_than: timedelta = STUCK_AFTER) -> int:
    """Sends never confirmed are failed for the agent to check, never resent: Meta may have them.

    Returns how many messages were marked failed. Flushes.
    """
    now = now or utcnow()
    stuck = db.session.scalars(
        select(Message.id).where(
            Message.status == MessageStatus.SENDING,
            Message.direction == Direction.OUTBOUND,
            or_(Message.last_attempt_at.is_(None), Message.last_attempt_at < now - older_than),
        )
    ).all()
    if not stuck:
        return 0
    failed = db.session.execute(
        update(Message)
        .where(Message.id.in_(stuck), Message.status == MessageStatus.SENDING)
        .values(status=MessageStatus.FAILED, error_code=UNCONFIRMED, error=UNCONFIRMED_ERROR)
        .execution_options(synchronize_session="fetch")
    ).rowcount
    log.warning("%d unconfirmed deliveries marked failed", failed)
    db.session.flush()
    return failed


def requeue_stalled(
    now: datetime | None = None,
    after: timedelta = REQUEUE_AFTER,
    retry_after: timedelta = STUCK_AFTER,
    limit: int = REQUEUE_BATCH,
) -> list[int]:
    """Queued messages no task is working on: never attempted for `after` (the broker was down
    when they were enqueued, or a scheduled message was released), or a retry lost on the way.

    Returns their ids for the caller to enqueue after committing; a duplicate task is harmless,
    since only one claim can win.
    """
    now = now or utcnow()
    return list(
        db.session.scalars(
            select(Message.id)
            .where(
                Message.status == MessageStatus.QUEUED,
                Message.direction == Direction.OUTBOUND,
                or_(
                    and_(
                        Message.delivery_attempts == 0,
                        func.coalesce(Message.send_at, Message.created_at) < now - after,
                    ),
                    and_(
                        Message.delivery_attempts > 0,
                        Message.last_attempt_at < now - retry_after,
                    ),
                ),
            )
            .order_by(Message.id)
            .limit(limit)
        ).all()
    )


# Reactions --------------------------------------------------------------------------------------


def send_reaction(message_id: int, emoji: str | None) -> str:
    """React (an emoji) or unreact (None) as the brand; returns sent, retry, failed or skipped.

    A reaction is idempotent on Meta's side (react replaces, unreact removes), so unlike a
    message it is retried even when an earlier attempt may have arrived. Instagram's Send API
    takes only the `love` reaction, whatever emoji the agent picked.
    """
    message = db.session.get(Message, message_id)
    if message is None or message.mid is None or message.unsent:
        return SKIPPED
    channel = db.session.get(Channel, message.channel_id)
    if channel.kind is not ChannelKind.INSTAGRAM:
        return SKIPPED
    if channel.needs_new_token or channel.access_token_encrypted is None:
        return FAILED
    payload = {"message_id": message.mid}
    if emoji:
        payload["reaction"] = INSTAGRAM_REACTION
    body = {
        "recipient": _recipient(db.session.get(Conversation, message.conversation_id)),
        "sender_action": "react" if emoji else "unreact",
        "payload": payload,
    }
    base = current_app.config["GRAPH_API_BASE"].rstrip("/")
    url = f"{base}/{channel.account_id}/messages"
    timeout = float(current_app.config.get("GRAPH_API_TIMEOUT", DEFAULT_TIMEOUT_SECONDS))
    try:
        token = channel.access_token
    except ValueError:
        return FAILED
    db.session.commit()
    result = _post(url, token, body, timeout)
    if not isinstance(result, SendError):
        return SENT
    if result.bad_token:
        db.session.get(Channel, channel.id).needs_new_token = True
        db.session.commit()
    if result.retryable or result.ambiguous:
        return RETRY
    log.warning("reaction on message %s refused: %s", message_id, result.reason)
    return FAILED
