"""The `api` channel's intake: a brand's own systems post customers' messages, idempotent by
`mid` like the platform webhook (a repeat answers 200 with the message already stored)."""

from __future__ import annotations

from typing import Any

from flask import Response

from helpdesk import transaction
from helpdesk.channels.service import api_channel
from helpdesk.dm.models import MessageKind
from helpdesk.dm.service import InboundMessage
from helpdesk.idempotency.service import Answer
from helpdesk.inbox import service as inbox
from helpdesk.web.api import idempotency, present
from helpdesk.web.api.auth import brand_id
from helpdesk.web.api.blueprint import api_blueprint
from helpdesk.web.api.inputs import InboundSchema
from helpdesk.web.api.schemas import MessageSchema

bp = api_blueprint("inbound", "The api channel's intake")


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
    channel = api_channel(brand_id(), data["channel_id"])
    claimed = idempotency.begin()
    if isinstance(claimed, Answer):
        return idempotency.replay(claimed)
    message, created = inbox.receive_once(channel, inbound_message(data))
    status = 201 if created else 200
    answer = idempotency.answer(claimed, status, MessageSchema, present.message(message))
    transaction.commit()
    return answer
