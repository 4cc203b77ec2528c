"""Audit events: who changed what in the brand, newest first (admin tokens only).

The rows are the console's audit page's (helpdesk.audit.service); secrets are never in them."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates

from helpdesk.accounts.models import Role
from helpdesk.audit import service as audit
from helpdesk.errors import InvalidField
from helpdesk.web.api.auth import brand_id, requires
from helpdesk.web.api.blueprint import api_blueprint
from helpdesk.web.api.pagination import paginate
from helpdesk.web.api.schemas import OneOf, PageQuerySchema, Text, When, page_of

bp = api_blueprint("audit", "Audit events")


class AuditQuerySchema(PageQuerySchema):
    since = When(metadata={"description": "events at or after this ISO 8601 time"})
    until = When(metadata={"description": "events before this ISO 8601 time"})
    actor = Text(
        validate=validate.Length(1, 32),
        metadata={
            "description": "`agent:<id>`, `token:<id>`, `agent` or `token` (any of them), "
            "or `system`"
        },
    )
    target_type = OneOf(audit.TARGET_TYPES)
    action = Text(
        validate=validate.Length(1, 64),
        metadata={"description": "part of the action's name: `tag` finds every tag change"},
    )

    @validates("actor")
    def _actor(self, value: str, **_kwargs: Any) -> None:
        try:
            audit.parse_actor(value)
        except InvalidField as refused:
            raise ValidationError(refused.fields["actor"][0]) from None


class AuditActorSchema(Schema):
    type = fields.String(required=True, metadata={"description": "agent, token or system"})
    id = fields.Integer(allow_none=True, required=True)
    name = fields.String(required=True, metadata={"description": "as named when they acted"})


class AuditTargetSchema(Schema):
    type = fields.String(required=True)
    id = fields.Integer(allow_none=True, required=True)
    label = fields.String(metadata={"description": "its name when it changed"})


class AuditEventSchema(Schema):
    id = fields.Integer(required=True)
    at = fields.String(required=True, metadata={"description": "ISO 8601, UTC"})
    actor = fields.Nested(AuditActorSchema, required=True)
    action = fields.String(required=True, metadata={"description": "`<target type>.<verb>`"})
    target = fields.Nested(AuditTargetSchema, required=True)
    changes = fields.Dict(
        keys=fields.String(),
        values=fields.Raw(),
        required=True,
        metadata={"description": "{field: [before, after]}; a secret only says `(changed)`"},
    )


@bp.route("/audit-events", methods=["GET"])
@requires(Role.ADMIN)
@bp.arguments(AuditQuerySchema, location="query")
@bp.response(200, page_of(AuditEventSchema, "AuditEventPage"))
def list_events(args: dict[str, Any]) -> dict[str, Any]:
    """The brand's changes, newest first, by actor, kind of target, action and time."""
    actor_type, actor_id = audit.parse_actor(args.get("actor"))
    query = audit.events_query(
        brand_id(),
        since=args.get("since"),
        until=args.get("until"),
        actor_type=actor_type,
        actor_id=actor_id,
        target_type=args.get("target_type"),
        action=args.get("action"),
    )
    rows, cursor = paginate(query, audit.ORDER, args)
    return {"items": [audit.to_dict(row) for row in rows], "next_cursor": cursor}
