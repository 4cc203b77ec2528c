"""Automation rules: read and changed with a manager or admin token, as on the settings page.

The same service as the page (`automations.rules`): the body is checked whole before anything is
written, and a refusal is a 422 naming the path of the value (`conditions[1].op`,
`actions[0].value`). Ids inside a rule (teams, agents, channels, tags, canned replies) must be
the token's brand's: another brand's id is refused like one that does not exist.
"""

from __future__ import annotations

from typing import Any

from marshmallow import INCLUDE, Schema, fields

from helpdesk import transaction
from helpdesk.accounts.models import Role
from helpdesk.automations import rules
from helpdesk.automations.engine import ACTIONS, EVENTS, FIELDS, IDLE_STATUSES, OPS
from helpdesk.automations.models import AutomationRule
from helpdesk.brands.service import get_brand
from helpdesk.web.api.auth import actor, brand_id, requires
from helpdesk.web.api.blueprint import api_blueprint
from helpdesk.web.api.lookups import owned
from helpdesk.web.api.pagination import Order, paginate
from helpdesk.web.api.schemas import PageQuerySchema, Text, page_of

bp = api_blueprint("automations", "Automation rules: what happens when, without anyone looking")

RULES = Order("automations", AutomationRule.id, AutomationRule.position, int, descending=False)


def _one_of(values: Any, text: str) -> dict[str, Any]:
    return {"description": f"{text}: {', '.join(values)}"}


class TriggerSchema(Schema):
    """Checked by the service, so a refusal names its path (`trigger.idle_minutes`)."""

    class Meta:
        unknown = INCLUDE

    event = fields.Raw(required=True, metadata=_one_of(EVENTS, "one of"))
    idle_minutes = fields.Raw(
        allow_none=True, metadata={"description": "ticket_idle only: minutes idle, 1 to 43200"}
    )
    idle_status = fields.Raw(
        allow_none=True, metadata=_one_of(IDLE_STATUSES, "ticket_idle only: idle while")
    )


class ConditionSchema(Schema):
    class Meta:
        unknown = INCLUDE

    field = fields.Raw(required=True, metadata=_one_of(FIELDS, "one of"))
    op = fields.Raw(required=True, metadata=_one_of(OPS, "one of (not every field takes all)"))
    value = fields.Raw(
        allow_none=True,
        metadata={"description": "a value of the field's kind; a list for in and not_in"},
    )


class ActionSchema(Schema):
    class Meta:
        unknown = INCLUDE

    type = fields.Raw(required=True, metadata=_one_of(ACTIONS, "one of"))
    value = fields.Raw(
        allow_none=True,
        metadata={
            "description": "an id of the brand (team, agent, canned reply), a tag id or name, a "
            "priority or status, minutes, a note's text, or agent:ID / team:ID for notify"
        },
    )


class AutomationPatchSchema(Schema):
    class Meta:
        unknown = INCLUDE  # the service names an unknown field in its refusal

    name = Text()
    enabled = fields.Raw(metadata={"description": "true or false"})
    position = fields.Raw(metadata={"description": "rules run from the lowest position up"})
    trigger = fields.Nested(TriggerSchema)
    conditions = fields.List(fields.Nested(ConditionSchema))
    actions = fields.List(fields.Nested(ActionSchema))
    once_per_ticket = fields.Raw(metadata={"description": "true: at most one run per ticket"})


class AutomationInSchema(AutomationPatchSchema):
    name = Text(required=True)
    trigger = fields.Nested(TriggerSchema, required=True)
    actions = fields.List(fields.Nested(ActionSchema), required=True)


class AutomationSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    enabled = fields.Boolean()
    position = fields.Integer()
    trigger = fields.Dict()
    conditions = fields.List(fields.Dict())
    actions = fields.List(fields.Dict())
    once_per_ticket = fields.Boolean()
    template = fields.String(
        allow_none=True, metadata={"description": "the ready-made rule it started from"}
    )


@bp.route("/automations", methods=["GET"])
@requires(Role.MANAGER)
@bp.arguments(PageQuerySchema, location="query")
@bp.response(200, page_of(AutomationSchema, "AutomationPage"))
def list_automations(args: dict[str, Any]) -> dict[str, Any]:
    """The brand's rules in the order they run."""
    rows, cursor = paginate(rules.rules_query(brand_id()), RULES, args)
    return {"items": [rules.to_dict(rule) for rule in rows], "next_cursor": cursor}


@bp.route("/automations", methods=["POST"])
@requires(Role.MANAGER)
@bp.arguments(AutomationInSchema)
@bp.response(201, AutomationSchema)
def create_automation(data: dict[str, Any]) -> dict[str, Any]:
    """A new rule, last in the order unless `position` is given; it runs from now on."""
    rule = rules.create_rule(get_brand(brand_id()), actor(), data)
    transaction.commit()
    return rules.to_dict(rule)


@bp.route("/automations/<id:automation_id>", methods=["GET"])
@requires(Role.MANAGER)
@bp.response(200, AutomationSchema)
def get_automation(automation_id: int) -> dict[str, Any]:
    """One rule."""
    return rules.to_dict(owned(AutomationRule, automation_id))


@bp.route("/automations/<id:automation_id>", methods=["PATCH"])
@requires(Role.MANAGER)
@bp.arguments(AutomationPatchSchema)
@bp.response(200, AutomationSchema)
def patch_automation(data: dict[str, Any], automation_id: int) -> dict[str, Any]:
    """Change the fields given; `trigger`, `conditions` and `actions` are replaced whole."""
    rule = rules.update_rule(owned(AutomationRule, automation_id), actor(), data)
    transaction.commit()
    return rules.to_dict(rule)


@bp.route("/automations/<id:automation_id>", methods=["DELETE"])
@requires(Role.MANAGER)
@bp.response(204)
def delete_automation(automation_id: int) -> None:
    """The rule stops at once; ticket histories keep its past runs."""
    rules.delete_rule(owned(AutomationRule, automation_id), actor())
    transaction.commit()
