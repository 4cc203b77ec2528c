"""What a channel's outage means for its replies and its admins.

When the platform refuses a channel's token (lifecycle.mark_needs_reconnect), queued and scheduled
replies wait: the delivery claims no message of a channel that is not active, and the release of
scheduled messages skips it. The admins are told once per outage. When the same account is
connected again (lifecycle.mark_connected publishes CHANNEL_RECONNECTED), every waiting reply
still inside its reply window goes to a delivery worker, after the commit, once; one whose window
closed meanwhile fails with the reason in words.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import event, select, update
from sqlalchemy.orm import Session

from helpdesk import hooks
from helpdesk.accounts.models import Role
from helpdesk.accounts.service import brand_agent_ids
from helpdesk.channels.models import Channel, ChannelStatus
from helpdesk.database import rows_matched
from helpdesk.delivery.sendapi import fail
from helpdesk.dm import service as dm
from helpdesk.dm.models import Conversation, Direction, Message, MessageStatus, RequestState
from helpdesk.errors import ReplyWindowClosed
from helpdesk.extensions import db
from helpdesk.notifications.models import NotificationKind
from helpdesk.notifications.service import notify
from helpdesk.queueing import enqueue_delivery
from helpdesk.types import utcnow

log = logging.getLogger(__name__)
RESUME_KEY = "delivery_resume_ids"


def subscribe() -> None:
    """Called by the app factory (helpdesk.hooks)."""
    hooks.on(hooks.CHANNEL_NEEDS_RECONNECT, notify_admins)
    hooks.on(hooks.CHANNEL_RECONNECTED, resume_waiting)
    # A channel made before Instagram Login (`flask connect-instagram`) has no connected_at: its
    # first connection through the login is a "connected", yet replies may be waiting.
    hooks.on(hooks.CHANNEL_CONNECTED, resume_waiting)


def is_waiting(channel: Channel | None) -> bool:
    """Sends of this channel wait for an admin to reconnect it."""
    return channel is not None and channel.status is not ChannelStatus.ACTIVE


def down_channels(brand_id: int) -> list[Channel]:
    """The brand's channels whose replies wait for a reconnect (for the console's notices)."""
    return list(
        db.session.scalars(
            select(Channel)
            .where(Channel.brand_id == brand_id, Channel.status != ChannelStatus.ACTIVE)
            .order_by(Channel.id)
        )
    )


def notify_admins(
    channel: Channel, reason: str = "", now: datetime | None = None, **_: object
) -> int:
    """One notification per admin per outage: `reconnect_notified_at` is set by a conditional
    update, so two workers refused at the same moment cannot both tell them."""
    now = now or utcnow()
    claimed = rows_matched(
        update(Channel)
        .where(Channel.id == channel.id, Channel.reconnect_notified_at.is_(None))
        .values(reconnect_notified_at=now)
        .execution_options(synchronize_session=False)
    )
    if claimed != 1:
        return 0
    db.session.refresh(channel, ["reconnect_notified_at"])
    name = f"@{channel.username}" if channel.username else (channel.name or channel.account_id)
    body = (
        f"Instagram is disconnected ({name}): replies wait until an admin reconnects it in "
        "Settings → Channels."
    )
    sent = 0
    for agent_id in brand_agent_ids(channel.brand_id, (Role.ADMIN,)):
        if notify(agent_id, channel.brand_id, NotificationKind.RECONNECT, body, at=now):
            sent += 1
    log.warning("channel %s needs a reconnect (%s): %d admins told", channel.id, reason, sent)
    return sent


def resume_waiting(channel: Channel, now: datetime | None = None, **_: object) -> list[int]:
    """The replies that waited: inside their window they are handed to a worker once the
    reconnect commits; outside it they fail with the reason. Due scheduled replies are released
    by the scheduler's next run, which checks their window the same way."""
    now = now or utcnow()
    waiting = db.session.scalars(
        select(Message)
        .where(
            Message.channel_id == channel.id,
            Message.direction == Direction.OUTBOUND,
            Message.status == MessageStatus.QUEUED,
        )
        .order_by(Message.id)
    ).all()
    ready = []
    for message in waiting:
        conversation = db.session.get(Conversation, message.conversation_id)
        if conversation.request_state is RequestState.BLOCKED:
            fail(message, "contact_blocked", "Not sent: the contact is blocked")
            continue
        try:
            dm.check_reply_window(conversation, now, human=not message.is_automated, now=now)
        except ReplyWindowClosed as closed:
            fail(message, closed.code, f"Not sent: {closed.message}")
            continue
        if message.error_code == "needs_reconnect":
            message.error_code = message.error = None
        ready.append(message.id)
    db.session.flush()
    db.session.info.setdefault(RESUME_KEY, []).extend(ready)
    log.info("channel %s reconnected: %d replies resume", channel.id, len(ready))
    return ready


@event.listens_for(db.session, "after_commit")
def _enqueue_resumed(session: Session) -> None:
    """After the commit, so the worker finds the rows; the claim keeps it to one send each."""
    ids = session.info.pop(RESUME_KEY, None)
    for message_id in ids or ():
        enqueue_delivery(message_id)


@event.listens_for(db.session, "after_soft_rollback")
def _forget_resumed(session: Session, previous: object) -> None:
    session.info.pop(RESUME_KEY, None)
