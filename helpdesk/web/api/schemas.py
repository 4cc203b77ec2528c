"""Marshmallow schemas of API v1: the field types every schema uses and what a response holds
(the OpenAPI document is generated from them and from the input schemas in inputs.py)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from helpdesk.accounts.models import Availability, Role
from helpdesk.dm.models import Folder, MessageKind, RequestState
from helpdesk.outgoing.models import EVENTS
from helpdesk.sla.calendar import DAYS
from helpdesk.tickets.models import Priority, TicketStatus
from helpdesk.web.api.pagination import DEFAULT_LIMIT, MAX_LIMIT

MAX_ID = 2**31 - 1  # an INTEGER primary key: larger values would overflow PostgreSQL's column
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(3000, 1, 1, tzinfo=UTC)
OUTBOUND_ATTACHMENTS = ("image", "video", "audio", "file")
INBOUND_ATTACHMENTS = tuple(
    kind.value
    for kind in MessageKind
    if kind not in (MessageKind.TEXT, MessageKind.POSTBACK, MessageKind.UNSUPPORTED)
)
MINUTES_PER_YEAR = 366 * 24 * 60


def enum_values(enum_cls: Any) -> list[str]:
    return [member.value for member in enum_cls]


# Fields -------------------------------------------------------------------------------------------


class Text(fields.String):
    """Text every backend can store: PostgreSQL refuses NUL characters and lone surrogates."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if "\x00" in text:
            raise ValidationError("must not contain NUL characters")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError("must be valid Unicode text") from None
        return text


class When(fields.AwareDateTime):
    """An ISO 8601 time, UTC when no offset is given, within years a database can hold."""

    def __init__(self, **kwargs: Any):
        super().__init__(format="iso", default_timezone=UTC, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        parsed = super()._deserialize(value, attr, data, **kwargs)
        try:
            parsed = parsed.astimezone(UTC)
        except (OverflowError, ValueError):
            raise ValidationError("is out of range") from None
        if not EARLIEST <= parsed < LATEST:
            raise ValidationError("must be between 1970 and 2999")
        return parsed


class Timestamp(fields.Field):
    """Milliseconds since the epoch (seconds below 10^12, as on the webhook) or ISO 8601."""

    def __init__(self, **kwargs: Any):
        kwargs.setdefault(
            "metadata",
            {"description": "milliseconds since the epoch, or an ISO 8601 time"},
        )
        super().__init__(**kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        if isinstance(value, str):
            return When()._deserialize(value, attr, data, **kwargs)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValidationError("must be milliseconds or an ISO 8601 time")
        seconds = value / 1000 if value >= 10**12 else value
        try:
            parsed = datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            raise ValidationError("is out of range") from None
        if not EARLIEST <= parsed < LATEST:
            raise ValidationError("must be between 1970 and 2999")
        return parsed


class Assignee(fields.String):
    """`none` or an agent id; `me` names the signed-in agent, and a token is no agent."""

    # A string on the wire (and so in the OpenAPI document), an id or `none` once parsed: wider
    # than the str a String's stubs promise.
    def _deserialize(  # type: ignore[override]
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> int | str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if text == "none":
            return text
        if text == "me":
            raise ValidationError("`me` means the signed-in agent; a token is none: give an id")
        if not re.fullmatch(r"[1-9][0-9]{0,9}", text) or int(text) > MAX_ID:
            raise ValidationError("must be `none` or an agent id")
        return int(text)


def Id(**kwargs: Any) -> fields.Integer:
    return fields.Integer(strict=True, validate=validate.Range(1, MAX_ID), **kwargs)


def Url(**kwargs: Any) -> fields.Url:
    return fields.Url(schemes={"http", "https"}, validate=validate.Length(max=2000), **kwargs)


def OneOf(values: list[str] | tuple[str, ...], **kwargs: Any) -> Text:
    return Text(validate=validate.OneOf(values), **kwargs)


# Shared pieces ------------------------------------------------------------------------------------


class ErrorDetailSchema(Schema):
    code = fields.String(required=True, metadata={"description": "snake_case error code"})
    message = fields.String(required=True)
    field_errors = fields.Dict(
        data_key="fields", metadata={"description": "problems per field, for validation errors"}
    )


class ErrorSchema(Schema):
    error = fields.Nested(ErrorDetailSchema, required=True)


class PageQuerySchema(Schema):
    limit = fields.Integer(
        load_default=DEFAULT_LIMIT,
        validate=validate.Range(1, MAX_LIMIT),
        metadata={"description": f"items per page, 1 to {MAX_LIMIT}"},
    )
    cursor = Text(
        validate=validate.Length(max=512),
        metadata={"description": "the next_cursor of the previous page"},
    )


def page_of(item: type[Schema], name: str) -> type[Schema]:
    """A page schema per listing, named so the OpenAPI document shows what each page holds."""
    return Schema.from_dict(
        {
            "items": fields.List(fields.Nested(item), required=True),
            "next_cursor": fields.String(allow_none=True, required=True),
        },
        name=name,
    )


class AttachmentSchema(Schema):
    type = OneOf(OUTBOUND_ATTACHMENTS, required=True)
    url = Url(required=True)


# Output -------------------------------------------------------------------------------------------


class ContactSchema(Schema):
    id = fields.Integer()
    platform_id = fields.String(metadata={"description": "the Instagram-scoped id"})
    username = fields.String(allow_none=True)
    name = fields.String(allow_none=True)
    follows_brand = fields.Boolean()
    followed_by_brand = fields.Boolean()
    blocked = fields.Boolean()


class TicketSlaSchema(Schema):
    policy_id = fields.Integer(allow_none=True)
    first_response_due_at = fields.DateTime(allow_none=True)
    next_response_due_at = fields.DateTime(allow_none=True)
    resolution_due_at = fields.DateTime(allow_none=True)
    breached = fields.List(fields.String())


class TicketCsatSchema(Schema):
    score = fields.Integer(metadata={"description": "1 to 5"})
    answered_at = fields.DateTime()


class TicketSchema(Schema):
    id = fields.Integer()
    conversation_id = fields.Integer()
    status = fields.String(validate=validate.OneOf(enum_values(TicketStatus)))
    priority = fields.String(validate=validate.OneOf(enum_values(Priority)))
    assignee_id = fields.Integer(allow_none=True)
    team_id = fields.Integer(allow_none=True)
    tags = fields.List(fields.String())
    opened_at = fields.DateTime()
    first_response_at = fields.DateTime(allow_none=True)
    resolved_at = fields.DateTime(allow_none=True)
    snoozed_until = fields.DateTime(allow_none=True)
    sla = fields.Nested(TicketSlaSchema)
    csat = fields.Nested(
        TicketCsatSchema, allow_none=True, metadata={"description": "the survey's answer"}
    )


class ConversationSchema(Schema):
    id = fields.Integer()
    kind = fields.String(metadata={"description": "direct or group"})
    channel_id = fields.Integer()
    title = fields.String(allow_none=True)
    contact = fields.Nested(ContactSchema, allow_none=True, metadata={"description": "direct"})
    contacts = fields.List(fields.Nested(ContactSchema), metadata={"description": "everyone"})
    folder = fields.String(validate=validate.OneOf(enum_values(Folder)))
    request_state = fields.String(validate=validate.OneOf(enum_values(RequestState)))
    status = fields.String(validate=validate.OneOf(enum_values(TicketStatus)))
    vanish_mode = fields.Boolean()
    window_closes_at = fields.DateTime(
        allow_none=True, metadata={"description": "after this a reply is refused (human agent)"}
    )
    standard_window_closes_at = fields.DateTime(
        allow_none=True, metadata={"description": "24 h after the customer's last message"}
    )
    last_message_at = fields.DateTime(allow_none=True)
    preview = fields.String(allow_none=True)
    current_ticket = fields.Nested(TicketSchema, allow_none=True)


class ReactionSchema(Schema):
    emoji = fields.String()
    reactor = fields.String(metadata={"description": "brand or contact"})
    contact_id = fields.Integer(allow_none=True)
    reacted_at = fields.DateTime()


class ReplyToSchema(Schema):
    id = fields.Integer(allow_none=True)
    mid = fields.String(allow_none=True)


class StorySchema(Schema):
    url = fields.String(allow_none=True, metadata={"description": "the story's media (expires)"})
    id = fields.String(allow_none=True)


class QuickReplySchema(Schema):
    payload = fields.String(allow_none=True)


class ReferralSchema(Schema):
    ref = fields.String(allow_none=True, metadata={"description": "the ig.me link's ref"})
    source = fields.String(allow_none=True, metadata={"description": "e.g. ADS, SHORTLINK"})
    type = fields.String(allow_none=True, metadata={"description": "e.g. OPEN_THREAD"})
    ad_id = fields.String(allow_none=True)
    ads_context_data = fields.Dict(
        allow_none=True, metadata={"description": "ad_title, photo_url, video_url, post_id"}
    )


class PostbackSchema(Schema):
    title = fields.String(allow_none=True)
    payload = fields.String(allow_none=True)


class MessageSchema(Schema):
    id = fields.Integer()
    conversation_id = fields.Integer()
    contact_id = fields.Integer(allow_none=True)
    mid = fields.String(allow_none=True)
    direction = fields.String(metadata={"description": "inbound or outbound"})
    kind = fields.String(validate=validate.OneOf(enum_values(MessageKind)))
    text = fields.String(allow_none=True)
    attachments = fields.List(fields.Dict())
    reply_to = fields.Nested(ReplyToSchema, allow_none=True)
    reactions = fields.List(fields.Nested(ReactionSchema))
    sent_at = fields.DateTime(allow_none=True)
    send_at = fields.DateTime(allow_none=True, metadata={"description": "a scheduled message"})
    status = fields.String()
    error = fields.String(allow_none=True)
    edited = fields.Boolean()
    unsent = fields.Boolean()
    # What the platform carried with the message, null when it carried none.
    story = fields.Nested(
        StorySchema, allow_none=True, metadata={"description": "the story a story reply answers"}
    )
    quick_reply = fields.Nested(
        QuickReplySchema, allow_none=True, metadata={"description": "a tapped quick reply"}
    )
    referral = fields.Nested(
        ReferralSchema, allow_none=True, metadata={"description": "the ad or ig.me link"}
    )
    postback = fields.Nested(
        PostbackSchema, allow_none=True, metadata={"description": "a tapped button"}
    )


class NoteSchema(Schema):
    id = fields.Integer()
    ticket_id = fields.Integer()
    author_id = fields.Integer(allow_none=True)
    body = fields.String()
    mentions = fields.List(fields.Integer())
    created_at = fields.DateTime()


class CannedReplySchema(Schema):
    id = fields.Integer()
    shortcode = fields.String()
    title = fields.String()
    body = fields.String()
    attachments = fields.List(fields.Nested(AttachmentSchema))
    shared = fields.Boolean()
    owner_id = fields.Integer(allow_none=True)
    usage_count = fields.Integer()


class RenderedSchema(Schema):
    text = fields.String()
    missing = fields.List(fields.String(), metadata={"description": "placeholders left empty"})
    too_long = fields.Boolean(metadata={"description": "over the platform's 1000 bytes"})


class SlaConditionsSchema(Schema):
    priority = OneOf(enum_values(Priority), allow_none=True)
    tag = Text(allow_none=True, validate=validate.Length(1, 64))
    tag_id = Id(allow_none=True)
    channel_id = Id(allow_none=True)


def Minutes() -> fields.Integer:
    return fields.Integer(
        strict=True, allow_none=True, validate=validate.Range(1, MINUTES_PER_YEAR)
    )


class SlaTargetsSchema(Schema):
    first_response_min = Minutes()
    next_response_min = Minutes()
    resolution_min = Minutes()


class SlaPolicySchema(Schema):
    id = fields.Integer(dump_only=True)
    name = Text(required=True, validate=validate.Length(1, 120))
    position = fields.Integer(
        strict=True, load_default=0, validate=validate.Range(-1_000_000, 1_000_000)
    )
    conditions = fields.Nested(SlaConditionsSchema, load_default=dict)
    targets = fields.Nested(SlaTargetsSchema, load_default=dict)
    business_hours = fields.Boolean(load_default=True)
    warning_pct = fields.Integer(strict=True, load_default=80, validate=validate.Range(1, 99))


class SlaPolicyPatchSchema(Schema):
    name = Text(validate=validate.Length(1, 120))
    position = fields.Integer(strict=True, validate=validate.Range(-1_000_000, 1_000_000))
    conditions = fields.Nested(SlaConditionsSchema)
    targets = fields.Nested(SlaTargetsSchema)
    business_hours = fields.Boolean()
    warning_pct = fields.Integer(strict=True, validate=validate.Range(1, 99))


class BusinessHoursSchema(Schema):
    timezone = Text(required=True, validate=validate.Length(1, 64))
    weekly = fields.Dict(
        keys=OneOf(DAYS),
        values=fields.List(
            fields.List(Text(validate=validate.Length(max=5)), validate=validate.Length(equal=2)),
            validate=validate.Length(max=24),
        ),
        load_default=dict,
        metadata={"description": 'e.g. {"mon": [["09:00", "17:00"]]}'},
    )
    holidays = fields.List(
        Text(validate=validate.Length(max=10)),
        load_default=list,
        validate=validate.Length(max=1000),
    )
    holidays_country = Text(allow_none=True, validate=validate.Length(1, 8))


class AgentSchema(Schema):
    id = fields.Integer()
    email = fields.String()
    name = fields.String()
    role = fields.String(validate=validate.OneOf(enum_values(Role)))
    availability = fields.String(validate=validate.OneOf(enum_values(Availability)))
    capacity = fields.Integer()
    team_ids = fields.List(fields.Integer())
    active = fields.Boolean()


class AgentCreatedSchema(AgentSchema):
    password = fields.String(
        allow_none=True, metadata={"description": "the generated password, shown this once"}
    )


class InvitationLinkSchema(Schema):
    url = fields.String(metadata={"description": "the invitation link: one use, for 7 days"})
    expires_at = fields.DateTime()
    emailed = fields.Boolean(metadata={"description": "also sent by e-mail (SMTP_URL is set)"})


class SubscriptionSchema(Schema):
    id = fields.Integer()
    url = fields.String()
    events = fields.List(fields.String(validate=validate.OneOf(EVENTS)))
    active = fields.Boolean()
    created_at = fields.DateTime()


class SubscriptionCreatedSchema(SubscriptionSchema):
    secret = fields.String(
        metadata={"description": "signs X-Helpdesk-Signature: sha256=...; shown this once"}
    )
