"""Settings: the brand's connected accounts, what state each is in, when its token expires, how
far reading its history has come, and when it last heard from the platform. Connecting and
disconnecting are in `instagram.py`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask import g, render_template
from flask.typing import ResponseReturnValue
from sqlalchemy import func, select

from helpdesk.accounts.models import Role
from helpdesk.channels.models import Backfill, Channel, ChannelKind, ChannelStatus
from helpdesk.dm.models import Conversation
from helpdesk.extensions import db
from helpdesk.intake.models import WebhookEvent
from helpdesk.web.settings import bp, page

# How many of the newest webhook deliveries are read to find each account's last one: the
# deliveries name their accounts in a JSON list, which no index serves, so the look is bounded.
RECENT_DELIVERIES = 500


@dataclass(frozen=True)
class ChannelRow:
    channel: Channel
    status: str
    status_class: str
    last_delivery_at: datetime | None
    last_message_at: datetime | None
    backfill: Backfill | None = None

    @property
    def reconnectable(self) -> bool:
        return self.channel.kind is ChannelKind.INSTAGRAM and (
            self.channel.status is not ChannelStatus.ACTIVE
        )


def _status(channel: Channel) -> tuple[str, str]:
    if channel.status is ChannelStatus.NEEDS_RECONNECT:
        return "Needs reconnect", "status-bad"
    if channel.status is ChannelStatus.DISCONNECTED:
        return "Disconnected", "status-wait"
    if channel.kind is ChannelKind.INSTAGRAM and channel.access_token_encrypted is None:
        return "Disabled: no token", "status-wait"
    return "Active", "status-ok"


def _last_deliveries(account_ids: set[str]) -> dict[str, datetime]:
    """When the newest of the recent webhook deliveries naming each account arrived."""
    found: dict[str, datetime] = {}
    rows = db.session.execute(
        select(WebhookEvent.account_ids, WebhookEvent.received_at)
        .order_by(WebhookEvent.id.desc())
        .limit(RECENT_DELIVERIES)
    )
    for accounts, received_at in rows:
        for account in set(accounts or []) & (account_ids - set(found)):
            found[account] = received_at
    return found


def channel_rows(brand_id: int) -> list[ChannelRow]:
    channels = list(
        db.session.scalars(select(Channel).where(Channel.brand_id == brand_id).order_by(Channel.id))
    )
    last_messages = dict(
        db.session.execute(
            select(Conversation.channel_id, func.max(Conversation.last_inbound_at))
            .where(Conversation.brand_id == brand_id)
            .group_by(Conversation.channel_id)
        ).all()
    )
    instagram = {c.account_id for c in channels if c.kind is ChannelKind.INSTAGRAM}
    deliveries = _last_deliveries(instagram) if instagram else {}
    backfills = {
        b.channel_id: b
        for b in db.session.scalars(
            select(Backfill).where(Backfill.channel_id.in_([c.id for c in channels]))
        )
    }
    return [
        ChannelRow(
            channel,
            *_status(channel),
            deliveries.get(channel.account_id) if channel.kind is ChannelKind.INSTAGRAM else None,
            last_messages.get(channel.id),
            backfills.get(channel.id),
        )
        for channel in channels
    ]


@bp.get("/settings/channels")
@page(Role.ADMIN)
def channels() -> ResponseReturnValue:
    return render_template("settings/channels.html", rows=channel_rows(g.brand.id))
