"""The brand's reactions through the Send API: idempotent on Meta's side, so unlike a message a
reaction is retried even when an earlier attempt may have arrived."""

from __future__ import annotations

import logging

from flask import current_app

from helpdesk.channels import lifecycle
from helpdesk.channels.models import Channel, ChannelKind, ChannelStatus
from helpdesk.delivery.sendapi import (
    DEFAULT_TIMEOUT_SECONDS,
    FAILED,
    RETRY,
    SENT,
    SKIPPED,
    SendError,
    post,
    recipient_of,
)
from helpdesk.dm.models import Conversation, Message
from helpdesk.extensions import db

log = logging.getLogger(__name__)

INSTAGRAM_REACTION = "love"  # the only reaction the Send API takes on Instagram


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
    if channel.status is not ChannelStatus.ACTIVE or channel.access_token_encrypted is None:
        return FAILED
    payload = {"message_id": message.mid}
    if emoji:
        payload["reaction"] = INSTAGRAM_REACTION
    body = {
        "recipient": recipient_of(db.session.get(Conversation, message.conversation_id)),
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
    result = post(url, token, body, timeout)
    if not isinstance(result, SendError):
        return SENT
    if result.bad_token:
        lifecycle.mark_needs_reconnect(db.session.get(Channel, channel.id), result.reason)
        db.session.commit()
        return FAILED
    if result.retryable or result.ambiguous:
        return RETRY
    log.warning("reaction on message %s refused: %s", message_id, result.reason)
    return FAILED
