"""Reconciliation and sweeps: an echo confirms a send whose answer was lost, sends never confirmed
are failed for the agent to check, and queued messages no task works on are found again."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, func, or_, select, update

from helpdesk.channels.models import Channel, ChannelStatus
from helpdesk.database import rows_matched
from helpdesk.delivery.sendapi import UNCONFIRMED, sent_mids
from helpdesk.dm.models import Conversation, Direction, Message, MessageStatus
from helpdesk.extensions import db
from helpdesk.types import utcnow

log = logging.getLogger(__name__)

RECONCILE_WINDOW = timedelta(minutes=10)
STUCK_AFTER = timedelta(minutes=10)
REQUEUE_AFTER = timedelta(minutes=1)
REQUEUE_BATCH = 500
UNCONFIRMED_ERROR = "Delivery could not be confirmed; check Instagram before resending"


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
            Conversation.channel_id == channel.id,  # the thread's unique index, both columns
            Conversation.thread_key.in_(thread_keys(recipient_platform_id)),
            *_may_be_echoed_since(sent_at - RECONCILE_WINDOW),
        )
        .order_by(Message.last_attempt_at, Message.id)
    ).all()
    for message in candidates:
        if mid in sent_mids(message):
            return message
    for message in candidates:
        awaiting = message.status in (MessageStatus.SENDING, MessageStatus.QUEUED)
        if awaiting and message.delivery_attempts > 0 and _is_next_part(message, text):
            return _attach_echo(message, mid, sent_at)
    return None


def thread_keys(recipient_platform_id: str) -> list[str]:
    """The threads an echo to this recipient may belong to."""
    return [f"direct:{recipient_platform_id}", f"group:{recipient_platform_id}"]


def _may_be_echoed_since(since: datetime) -> tuple[ColumnElement[bool], ...]:
    """Our own sends, attempted since `since`, that an echo may confirm."""
    return (
        Message.direction == Direction.OUTBOUND,
        Message.status.in_([MessageStatus.SENDING, MessageStatus.QUEUED, MessageStatus.SENT]),
        Message.last_attempt_at >= since,
    )


def last_attempts(keys: set[tuple[int, str]], since: datetime) -> dict[tuple[int, str], datetime]:
    """For an intake batch: by thread `(channel_id, thread_key)`, the last attempt since `since`
    of our sends that an echo may confirm. An echo at `at` may be one of them if its thread's
    last attempt is at or after `at - RECONCILE_WINDOW`."""
    if not keys:
        return {}
    rows = db.session.execute(
        select(Conversation.channel_id, Conversation.thread_key, func.max(Message.last_attempt_at))
        .join(Message, Message.conversation_id == Conversation.id)
        .where(
            Conversation.channel_id.in_({channel_id for channel_id, _ in keys}),
            Conversation.thread_key.in_({thread_key for _, thread_key in keys}),
            Message.channel_id == Conversation.channel_id,
            *_may_be_echoed_since(since),
        )
        .group_by(Conversation.channel_id, Conversation.thread_key)
    )
    return {(channel_id, thread_key): at for channel_id, thread_key, at in rows}


def _parts(message: Message) -> int:
    return (1 if message.text else 0) + len(message.attachments or [])


def _is_next_part(message: Message, echo_text: str | None) -> bool:
    """Parts go out in order, text first: an echo can only be the first part not yet known."""
    known = len(sent_mids(message))
    if known >= _parts(message):
        return False
    wanted = (echo_text or "").strip()
    if wanted:
        return known == 0 and (message.text or "").strip() == wanted
    return bool(message.attachments) and (known > 0 or not message.text)


def _attach_echo(message: Message, mid: str, sent_at: datetime) -> Message:
    mids = [*sent_mids(message), mid]
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
    failed = rows_matched(
        update(Message)
        .where(Message.id.in_(stuck), Message.status == MessageStatus.SENDING)
        .values(status=MessageStatus.FAILED, error_code=UNCONFIRMED, error=UNCONFIRMED_ERROR)
        .execution_options(synchronize_session="fetch")
    )
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
    since only one claim can win. Messages of a channel waiting for a reconnect stay put.
    """
    now = now or utcnow()
    active = select(Channel.id).where(Channel.status == ChannelStatus.ACTIVE)
    return list(
        db.session.scalars(
            select(Message.id)
            .where(
                Message.status == MessageStatus.QUEUED,
                Message.direction == Direction.OUTBOUND,
                Message.channel_id.in_(active.scalar_subquery()),
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
