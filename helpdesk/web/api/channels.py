"""The brand's connected accounts and their state, for a manager token: whether each is active,
waits for a reconnect or was disconnected, when its token expires and when it last heard from
a customer. Connecting needs a browser (Instagram Login), so there is no POST here."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields
from sqlalchemy import func, select

from helpdesk.accounts.models import Role
from helpdesk.channels.models import Channel, ChannelStatus
from helpdesk.dm.models import Conversation
from helpdesk.extensions import db
from helpdesk.web.api.auth import brand_id, requires
from helpdesk.web.api.blueprint import api_blueprint
from helpdesk.web.api.pagination import Order, paginate
from helpdesk.web.api.schemas import PageQuerySchema, page_of

bp = api_blueprint("channels", "Connected accounts")

CHANNELS = Order("channels", Channel.id, descending=False)


class ChannelSchema(Schema):
    id = fields.Integer()
    kind = fields.String(metadata={"description": "instagram or api"})
    account_id = fields.String(
        metadata={"description": "the platform's account id (digits; may exceed 2**53)"}
    )
    username = fields.String()
    name = fields.String()
    status = fields.String(metadata={"enum": [s.value for s in ChannelStatus]})
    token_expires_at = fields.DateTime(allow_none=True)
    connected_at = fields.DateTime(allow_none=True)
    last_event_at = fields.DateTime(
        allow_none=True, metadata={"description": "the newest message in its conversations"}
    )


def _last_events(channel_ids: list[int]) -> dict[int, Any]:
    """The newest message time per channel, from the conversations' own latest (one grouped
    read over the channel's conversations, not its messages)."""
    if not channel_ids:
        return {}
    rows = db.session.execute(
        select(Conversation.channel_id, func.max(Conversation.last_message_at))
        .where(Conversation.channel_id.in_(channel_ids))
        .group_by(Conversation.channel_id)
    )
    return dict(rows.all())


def present(channel: Channel, last_event_at: Any) -> dict[str, Any]:
    return {
        "id": channel.id,
        "kind": channel.kind.value,
        "account_id": channel.account_id,
        "username": channel.username or "",
        "name": channel.name or "",
        "status": channel.status.value,
        "token_expires_at": channel.token_expires_at,
        "connected_at": channel.connected_at,
        "last_event_at": last_event_at,
    }


@bp.route("/channels", methods=["GET"])
@requires(Role.MANAGER)
@bp.arguments(PageQuerySchema, location="query")
@bp.response(200, page_of(ChannelSchema, "ChannelPage"))
def list_channels(args: dict[str, Any]) -> dict[str, Any]:
    """The brand's channels, oldest first; never a token."""
    statement = select(Channel).where(Channel.brand_id == brand_id())
    rows, cursor = paginate(statement, CHANNELS, args)
    last = _last_events([c.id for c in rows])
    return {"items": [present(c, last.get(c.id)) for c in rows], "next_cursor": cursor}
