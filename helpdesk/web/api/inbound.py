"""The `api` channel's intake: a brand's own systems post customers' messages, idempotent by
`mid` like the platform webhook (a repeat answers 200 with the message already stored)."""

from __future__ import annotations

from typing import Any

from flask import Response

from helpdesk.channels.models import Channel, ChannelKind
from helpdesk.dm.models import Message, MessageKind
from helpdesk.dm.service import InboundMessage
from helpdesk.errors import DuplicateMessage
from helpdesk.extensions import db
from helpdesk.idempotency.service import Answer
from helpdesk.inbox import service as inbox
from helpdesk.web.api import idempotency, present
from helpdesk.web.api.auth import brand_id
from helpdesk.web.api.blueprint import api_blueprint
from helpdesk.web.api.errors import InvalidField
from helpdesk.web.api.inputs import InboundSchema
from helpdesk.web.api.schemas import MessageSchema

bp = api_blueprint("inbound", "The api channel's intake")


def api_channel(channel_id: int) -> Channel:
    """Only the brand's own `api` channels: Instagram's messages come through its webhook."""
    channel = db.session.get(Channel, channel_id)
    if channel is None or channel.brand_id != brand_id() or channel.kind is not ChannelKind.API:
        raise InvalidField("channel_id", "no api channel of this brand has this id")
    return channel


def inbound_message(data: dict[str, Any]) -> InboundMessage:
    """The intake's platform-neutral message; the first attachment gives the kind."""
    attachments = [
        {key: value for key, value in item.items() if value is not None}
        for item in data["attachments"]
    ]
    kind = MessageKind(attachments[0]["type"]) if attachments else MessageKind.TEXT
    return InboundMessage(
        mid=data["mid"],
        sender_id=data["sender"]["id"],
        sent_at=data["timestamp"],
        kind=kind,
        text=data.get("text"),
        attachments=attachments,
        reply_to_mid=data.get("reply_to"),
        sender_username=data["sender"].get("username"),
        sender_name=data["sender"].get("name"),
    )


@bp.route("/inbound", methods=["POST"])
@bp.arguments(InboundSchema)
@bp.response(201, MessageSchema, description="stored")
@bp.alt_response(200, schema=MessageSchema, description="already stored: the same message")
def inbound(data: dict[str, Any]) -> Response:
    """The `api` channel's intake, idempotent by `mid` like the platform webhook."""
    channel = api_channel(data["channel_id"])
    claimed = idempotency.begin()
    if isinstance(claimed, Answer):
        return idempotency.replay(claimed)
    try:
        with db.session.begin_nested():
            message = inbox.receive(channel, inbound_message(data))
        status = 201
    except DuplicateMessage as duplicate:
        message, status = db.session.get(Message, duplicate.existing_id), 200
    answer = idempotency.answer(claimed, status, MessageSchema, present.message(message))
    db.session.commit()
    return answer
