"""A channel's life: connected, refused by the platform (needs a reconnect), disconnected.

The state changes live here, once, for every caller: Instagram Login's callback, the delivery
workers that meet a refused token, the token refresh, Meta's deauthorize callback and the admin's
disconnect button. What follows a change (backfilling history, sending the replies that waited,
telling the admins) belongs to other packages, which subscribe to the hooks published here.
"""

from __future__ import annotations

from datetime import datetime

from helpdesk import hooks
from helpdesk.accounts.actor import Actor
from helpdesk.accounts.models import Agent
from helpdesk.audit.service import HIDDEN, record
from helpdesk.channels.models import Channel, ChannelStatus
from helpdesk.extensions import db
from helpdesk.types import utcnow


def mark_connected(
    channel: Channel,
    access_token: str,
    expires_at: datetime | None = None,
    username: str | None = None,
    name: str | None = None,
    actor: Actor | Agent | None = None,
    now: datetime | None = None,
) -> Channel:
    """A (new or renewed) working token. A channel that waited for a reconnect, or that was
    disconnected, is active again; the hooks say whether it is new or came back."""
    now = now or utcnow()
    was = channel.status
    first_time = channel.connected_at is None
    channel.access_token = access_token
    channel.token_expires_at = expires_at
    channel.token_refreshed_at = now
    channel.status = ChannelStatus.ACTIVE
    channel.disconnected_at = None
    channel.reconnect_notified_at = None
    channel.connected_at = channel.connected_at or now
    if username is not None:
        channel.username = username
    if name is not None:
        channel.name = name or channel.name
    db.session.flush()
    changes = {"status": [was.value if was else None, ChannelStatus.ACTIVE.value]}
    changes["token"] = [HIDDEN, HIDDEN]
    record(actor, channel.brand_id, "channel.connected", "channel", channel.id, changes,
           label=_label(channel))  # fmt: skip
    hooks.publish(hooks.CHANNEL_CONNECTED if first_time else hooks.CHANNEL_RECONNECTED,
                  channel=channel)  # fmt: skip
    return channel


def mark_needs_reconnect(channel: Channel, reason: str, now: datetime | None = None) -> bool:
    """The platform refused the token. True the first time in an outage (the caller's hook
    subscribers tell the admins once); later refusals change nothing."""
    if channel.status is not ChannelStatus.ACTIVE:
        return False
    channel.status = ChannelStatus.NEEDS_RECONNECT
    db.session.flush()
    record(None, channel.brand_id, "channel.needs_reconnect", "channel", channel.id,
           {"status": [ChannelStatus.ACTIVE.value, channel.status.value], "reason": [None, reason]},
           label=_label(channel))  # fmt: skip
    hooks.publish(hooks.CHANNEL_NEEDS_RECONNECT, channel=channel, reason=reason, now=now)
    return True


def mark_disconnected(
    channel: Channel,
    actor: Actor | Agent | None = None,
    reason: str = "",
    now: datetime | None = None,
) -> Channel:
    """No token any more (an admin disconnected it, or Meta deauthorized the app); the history
    stays, and sends wait as for a reconnect."""
    was = channel.status
    channel.status = ChannelStatus.DISCONNECTED
    channel.access_token = None
    channel.token_expires_at = None
    channel.disconnected_at = now or utcnow()
    db.session.flush()
    record(actor, channel.brand_id, "channel.disconnected", "channel", channel.id,
           {"status": [was.value if was else None, channel.status.value], "reason": [None, reason]},
           label=_label(channel))  # fmt: skip
    return channel


def _label(channel: Channel) -> str:
    return (
        f"{channel.kind.value} @{channel.username}"
        if channel.username
        else (f"{channel.kind.value} {channel.name or channel.account_id}")
    )
