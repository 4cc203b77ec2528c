"""Input schemas of API v1: the query strings and bodies a request may carry, validated before any
service runs (the OpenAPI document shows them as parameters and request bodies)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from helpdesk.accounts.models import Availability, Role
from helpdesk.dm.models import Folder, RequestState
from helpdesk.outgoing.models import EVENTS
from helpdesk.tickets.models import Priority, TicketStatus
from helpdesk.web.api.schemas import (
    INBOUND_ATTACHMENTS,
    OUTBOUND_ATTACHMENTS,
    Assignee,
    AttachmentSchema,
    Id,
    OneOf,
    PageQuerySchema,
    Text,
    Timestamp,
    Url,
    When,
    enum_values,
)


class ConversationQuerySchema(PageQuerySchema):
    folder = OneOf(enum_values(Folder))
    status = OneOf(enum_values(TicketStatus))
    request_state = OneOf(
        enum_values(RequestState),
        metadata={"description": "default: the inbox (none, pending, accepted)"},
    )
    assignee = Assignee(metadata={"description": "none or an agent id (`me` is no agent)"})
    tag = Text(validate=validate.Length(1, 64))
    q = Text(validate=validate.Length(1, 200), metadata={"description": "contact or preview"})


class TicketQuerySchema(PageQuerySchema):
    status = OneOf(enum_values(TicketStatus))
    assignee = Assignee(metadata={"description": "none or an agent id (`me` is no agent)"})
    tag = Text(validate=validate.Length(1, 64))
    sla = OneOf(("at_risk", "breached"))


class CannedQuerySchema(PageQuerySchema):
    q = Text(validate=validate.Length(1, 200), metadata={"description": "shortcode or words"})


class ReplyAttachmentSchema(Schema):
    """By URL, or an agent's file: `{type, upload_id}` with an id from POST /uploads."""

    type = OneOf(OUTBOUND_ATTACHMENTS, required=True)
    url = Url(metadata={"description": "a public http(s) link, or give upload_id"})
    upload_id = Id(metadata={"description": "an id answered by POST /uploads, or give url"})

    @validates_schema
    def _url_or_upload(self, data: dict, **_kwargs: Any) -> None:
        if ("url" in data) == ("upload_id" in data):
            raise ValidationError("give url or upload_id (one of them)", "url")


class ReplyInSchema(Schema):
    text = Text(allow_none=True, validate=validate.Length(max=4000))
    attachments = fields.List(
        fields.Nested(ReplyAttachmentSchema), load_default=list, validate=validate.Length(max=10)
    )
    reply_to = Id(allow_none=True, metadata={"description": "id of a message quoted"})
    send_at = When(allow_none=True, metadata={"description": "schedule for this time"})
    canned_reply = Id(allow_none=True, metadata={"description": "send this canned reply"})
    last_seen_message_id = Id(
        allow_none=True,
        metadata={
            "description": "the newest message the sender saw: a newer reply by someone else "
            "answers 409 newer_reply"
        },
    )
    confirm = fields.Boolean(
        load_default=False, metadata={"description": "send even over a newer reply"}
    )

    @validates_schema
    def _something_to_send(self, data: dict, **_kwargs: Any) -> None:
        if data.get("canned_reply") is not None:
            if data.get("text") is not None:
                raise ValidationError("give text or canned_reply, not both", "text")
        elif not (data.get("text") or "").strip() and not data.get("attachments"):
            raise ValidationError("a message needs text, attachments or a canned_reply", "text")


class RequestActionSchema(Schema):
    action = OneOf(("accept", "decline", "block"), required=True)


class ReactionInSchema(Schema):
    emoji = Text(required=True, validate=validate.Length(1, 32))


class TicketPatchSchema(Schema):
    status = OneOf(enum_values(TicketStatus))
    priority = OneOf(enum_values(Priority))
    assignee_id = Id(allow_none=True, metadata={"description": "null unassigns"})
    team_id = Id(allow_none=True)
    snoozed_until = When(allow_none=True, metadata={"description": "with status snoozed"})


class TagInSchema(Schema):
    name = Text(required=True, validate=validate.Length(1, 64))


class NoteInSchema(Schema):
    body = Text(required=True, validate=validate.Length(1, 5000))


class CannedInSchema(Schema):
    shortcode = Text(required=True, validate=validate.Length(1, 41))
    title = Text(allow_none=True, validate=validate.Length(max=200))
    body = Text(required=True, validate=validate.Length(1, 4000))
    attachments = fields.List(
        fields.Nested(AttachmentSchema), load_default=list, validate=validate.Length(max=10)
    )


class CannedPatchSchema(Schema):
    shortcode = Text(validate=validate.Length(1, 41))
    title = Text(allow_none=True, validate=validate.Length(max=200))
    body = Text(validate=validate.Length(1, 4000))
    attachments = fields.List(fields.Nested(AttachmentSchema), validate=validate.Length(max=10))


class RenderInSchema(Schema):
    conversation_id = Id(required=True)


class AgentInSchema(Schema):
    email = fields.Email(required=True, validate=validate.Length(max=254))
    name = Text(required=True, validate=validate.Length(1, 200))
    role = OneOf(enum_values(Role), load_default=Role.AGENT.value)
    password = Text(
        validate=validate.Length(10, 200),
        metadata={
            "description": "generated (and answered once) when left out; not a common password"
        },
    )


class AgentPatchSchema(Schema):
    role = OneOf(enum_values(Role), metadata={"description": "needs an admin token"})
    availability = OneOf(enum_values(Availability))
    capacity = fields.Integer(strict=True, validate=validate.Range(0, 1000))
    team_ids = fields.List(Id(), validate=validate.Length(max=100))


class SubscriptionInSchema(Schema):
    url = Text(required=True, validate=validate.Length(1, 2048))
    events = fields.List(OneOf(EVENTS), required=True, validate=validate.Length(1, len(EVENTS)))


class SenderSchema(Schema):
    id = Text(required=True, validate=validate.Length(1, 64))
    username = Text(allow_none=True, validate=validate.Length(max=64))
    name = Text(allow_none=True, validate=validate.Length(max=200))


class InboundAttachmentSchema(Schema):
    type = OneOf(INBOUND_ATTACHMENTS, required=True)
    url = Url(allow_none=True)


class InboundSchema(Schema):
    channel_id = Id(required=True, metadata={"description": "an `api` channel of the brand"})
    sender = fields.Nested(SenderSchema, required=True)
    mid = Text(required=True, validate=validate.Length(1, 255))
    timestamp = Timestamp(required=True)
    text = Text(allow_none=True, validate=validate.Length(max=20000))
    attachments = fields.List(
        fields.Nested(InboundAttachmentSchema), load_default=list, validate=validate.Length(max=20)
    )
    reply_to = Text(
        allow_none=True, validate=validate.Length(1, 255), metadata={"description": "a mid"}
    )

    @validates_schema
    def _something_said(self, data: dict, **_kwargs: Any) -> None:
        if not (data.get("text") or "").strip() and not data.get("attachments"):
            raise ValidationError("a message needs text or attachments", "text")
