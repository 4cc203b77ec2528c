"""A brand's automation rules as a setting: create, change, enable, order and delete them.

One set of functions serves the settings page and the API alike: every field is checked
(`validation.clean_rule`) before anything is written, so a refused body changes nothing, and each
change is written to the audit log in the same transaction. Rules run in `position` order (then
id); the engine (`helpdesk.automations.engine`) reads them. Functions flush; the caller commits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

from helpdesk.accounts.actor import Actor
from helpdesk.accounts.models import Agent, Role
from helpdesk.accounts.service import require_role
from helpdesk.audit import service as audit
from helpdesk.automations.models import AutomationRule
from helpdesk.automations.validation import clean_rule
from helpdesk.brands.models import Brand
from helpdesk.errors import NotFound
from helpdesk.extensions import db
from helpdesk.tickets.models import TicketEvent

ActorLike = Actor | Agent | None
AUDITED = (
    "name",
    "enabled",
    "position",
    "event",
    "idle_minutes",
    "idle_status",
    "conditions",
    "actions",
    "once_per_ticket",
)
RUN_EVENT = "automation"  # the kind of the TicketEvent the engine records for each run


# Ready-made rules ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    """A rule to start from: the console fills the editor with it, the admin picks what is
    left blank (`None` values, such as which canned reply answers) and saves."""

    key: str
    title: str
    summary: str
    body: dict[str, Any] = field(default_factory=dict)


TEMPLATES: dict[str, Template] = {
    template.key: template
    for template in (
        Template(
            "away_message",
            "Away message",
            "Outside business hours, answer a customer's first message with a canned reply, "
            "once per ticket. It never counts as a first response.",
            {
                "name": "Away message",
                "trigger": {"event": "message_received"},
                "conditions": [{"field": "business_hours", "op": "eq", "value": "closed"}],
                "actions": [{"type": "send_canned_reply", "value": None}],
                "once_per_ticket": True,
            },
        ),
        Template(
            "resolve_pending",
            "Resolve pending tickets after 48 hours",
            "A ticket waiting on the customer for two days is resolved; a new message reopens it.",
            {
                "name": "Resolve pending after 48 h",
                "trigger": {
                    "event": "ticket_idle",
                    "idle_minutes": 48 * 60,
                    "idle_status": "pending",
                },
                "conditions": [],
                "actions": [{"type": "set_status", "value": "resolved"}],
                "once_per_ticket": False,
            },
        ),
        Template(
            "notify_unassigned",
            "Notify a team about unassigned tickets",
            "A ticket nobody has taken for 15 minutes notifies the team you pick.",
            {
                "name": "Unassigned for 15 minutes",
                "trigger": {
                    "event": "ticket_idle",
                    "idle_minutes": 15,
                    "idle_status": "unassigned",
                },
                "conditions": [],
                "actions": [{"type": "notify", "value": None}],
                "once_per_ticket": False,
            },
        ),
        Template(
            "raise_priority",
            "Raise the priority of unanswered tickets",
            "An open ticket without a reply for 30 minutes becomes high priority.",
            {
                "name": "No reply for 30 minutes",
                "trigger": {"event": "ticket_idle", "idle_minutes": 30, "idle_status": "open"},
                "conditions": [{"field": "priority", "op": "in", "value": ["low", "normal"]}],
                "actions": [{"type": "set_priority", "value": "high"}],
                "once_per_ticket": False,
            },
        ),
    )
}


# Reading ------------------------------------------------------------------------------------------


def rules_query(brand_id: int) -> Any:
    """The brand's rules, for a listing to order and page."""
    return select(AutomationRule).where(AutomationRule.brand_id == brand_id)


def list_rules(brand_id: int) -> list[AutomationRule]:
    """The brand's rules in the order they run."""
    query = rules_query(brand_id).order_by(AutomationRule.position, AutomationRule.id)
    return list(db.session.scalars(query))


def get_rule(brand_id: int, rule_id: int) -> AutomationRule:
    """The brand's rule; another brand's is NotFound, like none at all."""
    rule = db.session.get(AutomationRule, rule_id)
    if rule is None or rule.brand_id != brand_id:
        raise NotFound("no such automation rule")
    return rule


def body_of(rule: AutomationRule) -> dict[str, Any]:
    """The API's shape of a rule, without its id: what an editor starts from."""
    trigger: dict[str, Any] = {"event": rule.event}
    if rule.idle_minutes is not None:
        trigger["idle_minutes"] = rule.idle_minutes
    if rule.idle_status is not None:
        trigger["idle_status"] = rule.idle_status
    return {
        "name": rule.name,
        "enabled": rule.enabled,
        "position": rule.position,
        "trigger": trigger,
        "conditions": list(rule.conditions or []),
        "actions": list(rule.actions or []),
        "once_per_ticket": rule.once_per_ticket,
    }


def to_dict(rule: AutomationRule) -> dict[str, Any]:
    """The API's shape of a rule."""
    return {"id": rule.id, **body_of(rule), "template": rule.template}


def runs_of(ticket_id: int) -> list[TicketEvent]:
    """The ticket's automation runs, oldest first, for its history in the console."""
    return list(
        db.session.scalars(
            select(TicketEvent)
            .where(TicketEvent.ticket_id == ticket_id, TicketEvent.kind == RUN_EVENT)
            .order_by(TicketEvent.at, TicketEvent.id)
        )
    )


# Changing -----------------------------------------------------------------------------------------


def last_position(brand_id: int) -> int:
    """The position after every rule of the brand, so that a new rule runs last."""
    highest = db.session.scalar(
        select(func.max(AutomationRule.position)).where(AutomationRule.brand_id == brand_id)
    )
    return 0 if highest is None else highest + 1


def _record(actor: ActorLike, rule: AutomationRule, verb: str, changes: dict[str, Any]) -> None:
    if changes:
        audit.record(
            actor,
            rule.brand_id,
            f"automation.{verb}",
            "automation_rule",
            rule.id,
            changes,
            label=rule.name,
        )


def create_rule(
    brand: Brand, actor: ActorLike, data: Mapping[str, Any], template: str | None = None
) -> AutomationRule:
    """A new rule, last in the order unless the body gives a position; enabled unless it says
    otherwise. `template` remembers which ready-made rule it started from."""
    require_role(actor, brand.id, Role.MANAGER)
    values = clean_rule(brand.id, data)
    values.setdefault("position", last_position(brand.id))
    values.setdefault("conditions", [])
    rule = AutomationRule(
        brand_id=brand.id, template=template if template in TEMPLATES else None, **values
    )
    db.session.add(rule)
    db.session.flush()
    _record(actor, rule, "created", audit.created(audit.snapshot(rule, AUDITED)))
    return rule


def update_rule(rule: AutomationRule, actor: ActorLike, data: Mapping[str, Any]) -> AutomationRule:
    """Change the fields given (PATCH); `trigger`, `conditions` and `actions` are replaced whole."""
    require_role(actor, rule.brand_id, Role.MANAGER)
    values = clean_rule(rule.brand_id, data, partial=True)
    before = audit.snapshot(rule, AUDITED)
    for key, value in values.items():
        setattr(rule, key, value)
    db.session.flush()
    _record(actor, rule, "updated", audit.diff(before, audit.snapshot(rule, AUDITED)))
    return rule


def set_enabled(rule: AutomationRule, actor: ActorLike, enabled: bool) -> AutomationRule:
    """Switch a rule on or off without touching the rest of it."""
    return update_rule(rule, actor, {"enabled": enabled})


def delete_rule(rule: AutomationRule, actor: ActorLike) -> None:
    """The rule stops at once; the ticket history keeps the runs it made, by name."""
    require_role(actor, rule.brand_id, Role.MANAGER)
    _record(actor, rule, "deleted", audit.removed(audit.snapshot(rule, AUDITED)))
    db.session.delete(rule)
    db.session.flush()


def move_rule(rule: AutomationRule, actor: ActorLike, up: bool) -> bool:
    """Swap a rule with its neighbour in running order (False at either end). The brand's rules
    are locked first on PostgreSQL, so two moves at once cannot interleave their swaps; all are
    renumbered, so equal positions left by the API cannot make a move a no-op."""
    require_role(actor, rule.brand_id, Role.MANAGER)
    query = rules_query(rule.brand_id).order_by(AutomationRule.position, AutomationRule.id)
    if db.session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    ordered = list(db.session.scalars(query.execution_options(populate_existing=True)))
    index = ordered.index(rule)
    other = index - 1 if up else index + 1
    if not 0 <= other < len(ordered):
        return False
    names = [each.name for each in ordered]
    ordered[index], ordered[other] = ordered[other], ordered[index]
    before = rule.position
    for position, each in enumerate(ordered):
        each.position = position
    db.session.flush()
    changes = {
        "position": [before, rule.position],
        "order": [names, [each.name for each in ordered]],
    }
    _record(actor, rule, "moved", changes)
    return True


def from_template(key: str) -> dict[str, Any]:
    """A copy of the template's body for an editor; NotFound for an unknown template."""
    template = TEMPLATES.get(key)
    if template is None:
        raise NotFound("no such template")
    body = template.body
    return {
        **body,
        "trigger": dict(body["trigger"]),
        "conditions": [dict(c) for c in body["conditions"]],
        "actions": [dict(a) for a in body["actions"]],
        "enabled": True,
    }
