"""Sending queued messages and brand reactions through Meta's Send API, at most once per message.

Unlike other services, `deliver` commits: the attempt must be durable before the HTTP call, so a
worker killed mid-send leaves a trace that stops a second send, and no transaction may stay open
(holding SQLite's write lock) while Meta answers.

How an outbound message moves:

    queued --claim--> sending --message id--> sent
                              --1, 2, 4, 17, 341, 613, 5xx, not reached--> queued (retried)
                              --190, 10 (not the window), 200-299--> queued, waiting for a
                                reconnect (the channel is marked needs_reconnect)
                              --10 (window), 100, 551, anything else--> failed
                              --no answer once the request was out--> sending (left to the echo)
    sending --echo with the same text (reconcile_echo)--> sent
    sending for 10 minutes (sweep_stuck_deliveries) --> failed, never resent automatically
    queued on a channel that is not active: not claimed; it waits for the reconnect (outage.py)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from helpdesk.channels import lifecycle
from helpdesk.channels.models import Channel, ChannelKind, ChannelStatus
from helpdesk.database import rows_matched
from helpdesk.delivery.reactions import send_reaction
from helpdesk.delivery.reconcile import reconcile_echo, requeue_stalled, sweep_stuck_deliveries
from helpdesk.delivery.sendapi import (
    DEFAULT_TIMEOUT_SECONDS,
    FAILED,
    RETRY,
    SENT,
    SKIPPED,
    TOKEN_REASON,
    UNCONFIRMED,
    WAITING,
    WAITING_REASON,
    SendError,
    attachment_url,
    fail,
    mark_sent,
    post,
    recipient_of,
    sent_mids,
    with_quick_replies,
)
from helpdesk.dm import service as dm
from helpdesk.dm.models import Conversation, Direction, Message, MessageStatus, RequestState
from helpdesk.errors import ReplyWindowClosed
from helpdesk.extensions import db
from helpdesk.types import utcnow

log = logging.getLogger(__name__)

__all__ = [
    "FAILED",
    "MAX_ATTEMPTS",
    "RETRY",
    "SENT",
    "SKIPPED",
    "TOKEN_REASON",
    "UNCONFIRMED",
    "WAITING",
    "backoff_seconds",
    "deliver",
    "reconcile_echo",
    "requeue_stalled",
    "send_reaction",
    "sweep_stuck_deliveries",
]

MAX_ATTEMPTS = 6


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
    """Send a queued outbound message; returns sent, retry, failed, unconfirmed, waiting (the
    channel needs a reconnect: the message stays queued) or skipped.

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
        result = post(plan.url, plan.token, plan.bodies[index], plan.timeout)
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
    """A conditional update, so two workers given the same message cannot both send it; a
    message of a channel waiting for a reconnect is not claimed (it stays queued)."""
    active = select(Channel.id).where(Channel.status == ChannelStatus.ACTIVE)
    claimed = rows_matched(
        update(Message)
        .where(
            Message.id == message_id,
            Message.direction == Direction.OUTBOUND,
            Message.status == MessageStatus.QUEUED,
            Message.channel_id.in_(active.scalar_subquery()),
        )
        .values(
            status=MessageStatus.SENDING,
            delivery_attempts=Message.delivery_attempts + 1,
            last_attempt_at=now,
        )
        .execution_options(synchronize_session=False)
    )
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
        mark_sent(message, now)
        return SENT
    if conversation.request_state is RequestState.BLOCKED:
        fail(message, "contact_blocked", "Not sent: the contact is blocked")
        return FAILED
    human = not message.is_automated
    try:
        dm.check_reply_window(conversation, now, human=human, now=now)
    except ReplyWindowClosed as closed:
        fail(message, closed.code, f"Not sent: {closed.message}")
        return FAILED
    message.human_agent_tag = human and dm.needs_human_agent_tag(conversation, now)
    if channel.status is not ChannelStatus.ACTIVE or channel.access_token_encrypted is None:
        lifecycle.mark_needs_reconnect(channel, "the channel has no access token", now=now)
        _wait(message, attempted=False)
        return WAITING
    try:
        token = channel.access_token
    except ValueError:
        fail(message, "token_unreadable", "The channel's access token cannot be read: reconnect")
        return FAILED
    bodies = _bodies(message, conversation)
    done = len(sent_mids(message))
    if not bodies:
        fail(message, "empty", "Not sent: the message has neither text nor attachments")
        return FAILED
    if done >= len(bodies):
        mark_sent(message, now)  # every part was confirmed by its echo meanwhile
        return SENT
    base = current_app.config["GRAPH_API_BASE"].rstrip("/")
    return _Plan(
        url=f"{base}/{channel.account_id}/messages",
        token=token,
        bodies=bodies,
        done=done,
        timeout=float(current_app.config.get("GRAPH_API_TIMEOUT", DEFAULT_TIMEOUT_SECONDS)),
    )


def _bodies(message: Message, conversation: Conversation) -> list[dict]:
    """One Send API call per part: the text first, then each attachment."""
    contents: list[dict] = [{"text": message.text}] if message.text else []
    for attachment in message.attachments or []:
        url = attachment_url(attachment)
        contents.append({"attachment": {"type": attachment["type"], "payload": {"url": url}}})
    recipient = recipient_of(conversation)
    bodies = []
    for index, content in enumerate(contents):
        if index == 0:
            content = with_quick_replies(content, message)  # a survey's buttons
        body: dict = {"recipient": recipient, "message": content}
        if index == 0 and message.reply_to_mid:
            body["reply_to"] = {"mid": message.reply_to_mid}
        if message.human_agent_tag:
            body["messaging_type"] = "MESSAGE_TAG"
            body["tag"] = "HUMAN_AGENT"
        bodies.append(body)
    return bodies


def _record_part(message_id: int, mid: str, total: int, now: datetime) -> None:
    """Keep each accepted part at once, so a retry resumes after it instead of repeating it."""
    message = db.session.get(Message, message_id)
    mids = sent_mids(message)
    if mid not in mids:
        mids.append(mid)
    if message.mid is None:
        message.mid = mid
    if total > 1:
        message.extra = {**(message.extra or {}), "mids": mids}
    if len(mids) >= total:
        mark_sent(message, now)
    try:
        db.session.flush()
    except IntegrityError:
        # The intake stored the echo as a message of its own first: that row holds the mid.
        db.session.rollback()
        message = db.session.get(Message, message_id)
        message.extra = {**(message.extra or {}), "mids": mids, "mid_held_by_echo": mid}
        if len(mids) >= total:
            mark_sent(message, now)
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
        channel = db.session.get(Channel, message.channel_id)
        lifecycle.mark_needs_reconnect(channel, reason)
        _wait(message, attempted=True)
        log.info("message %s waits for a reconnect: %s", message_id, reason)
        return WAITING
    if error.retryable and message.delivery_attempts < MAX_ATTEMPTS:
        message.status = MessageStatus.QUEUED
        message.error_code = error.code
        message.error = f"retrying: {reason}"
        log.info("message %s will be retried: %s", message_id, reason)
        return RETRY
    if error.retryable:
        reason = f"{reason}; gave up after {message.delivery_attempts} attempts"
    fail(message, error.code, reason)
    log.info("message %s failed: %s", message_id, reason)
    return FAILED


def _wait(message: Message, attempted: bool) -> None:
    """Nothing went out: the message goes back to `queued`, and is not claimed again until the
    channel is reconnected (outage.resume_waiting hands it to a worker then)."""
    message.status = MessageStatus.QUEUED
    message.error_code = "needs_reconnect"
    message.error = WAITING_REASON
    if not attempted:
        message.delivery_attempts = max(0, message.delivery_attempts - 1)
