"""Settings: automation rules in running order, each editable, switchable and movable, a few
ready-made ones to start from, and a dry run showing which open tickets a rule matches now.

The editor posts parallel lists (`condition_field`, `condition_op`, `condition_value`,
`action_type`, `action_value`): a row left without a field or type is skipped. The values are
typed (`validation.typed_*`) and checked by the same service as the API; a refusal re-renders the
editor with the message next to the row it is about, nothing saved.
"""

from __future__ import annotations

from itertools import zip_longest
from typing import Any

from flask import g, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from helpdesk.accounts.models import Agent, Membership, Role, Team
from helpdesk.automations import engine, rules
from helpdesk.automations.models import AutomationRule
from helpdesk.automations.validation import IDLE_EVENT, LIST_OPS, typed_action, typed_condition
from helpdesk.canned.models import CannedReply
from helpdesk.channels.models import Channel
from helpdesk.extensions import db
from helpdesk.tickets.models import Tag
from helpdesk.web.settings import bp, page
from helpdesk.web.settings.forms import attempt

LIST = "settings.automations"
BLANK_CONDITIONS = 2
BLANK_ACTIONS = 1
FIELD_LABELS = {
    "text": "Message text",
    "folder": "Folder",
    "channel_id": "Channel",
    "tag": "Tag",
    "priority": "Priority",
    "status": "Status",
    "assignee_id": "Assignee",
    "team_id": "Team",
    "business_hours": "Business hours",
    "contact_follows_brand": "Contact follows you",
    "contact_is_new": "Contact is new",
}
OP_LABELS = {
    "eq": "is",
    "ne": "is not",
    "contains": "contains",
    "not_contains": "does not contain",
    "in": "is one of",
    "not_in": "is none of",
}
ACTION_LABELS = {
    "assign_team": "Assign to team",
    "assign_agent": "Assign to agent",
    "add_tag": "Add tag",
    "remove_tag": "Remove tag",
    "set_priority": "Set priority",
    "set_status": "Set status",
    "snooze_minutes": "Snooze for minutes",
    "send_canned_reply": "Send canned reply",
    "add_note": "Add internal note",
    "notify": "Notify",
}
EVENT_LABELS = {
    "message_received": "A customer's message arrives",
    "ticket_created": "A ticket is opened",
    "ticket_updated": "A person changes a ticket",
    "ticket_resolved": "A ticket is resolved",
    "ticket_idle": "A ticket stays idle",
}
IDLE_LABELS = {"open": "open without a reply", "pending": "pending", "unassigned": "unassigned"}


# What the field-aware inputs offer ----------------------------------------------------------------


def _agents(brand_id: int) -> list[tuple[str, str]]:
    rows = db.session.execute(
        select(Agent.id, Agent.name)
        .join(Membership, Membership.agent_id == Agent.id)
        .where(Membership.brand_id == brand_id, Agent.active.is_(True))
        .order_by(Agent.name)
    )
    return [(str(agent_id), name) for agent_id, name in rows]


def _named(model: Any, label: Any, brand_id: int, *where: Any) -> list[tuple[str, str]]:
    rows = db.session.execute(
        select(model.id, label).where(model.brand_id == brand_id, *where).order_by(label)
    )
    return [(str(row_id), name or str(row_id)) for row_id, name in rows]


def choices(brand_id: int) -> dict[str, list[tuple[str, str]]]:
    """(value, label) per kind of value, for the selects the editor offers by field or action."""
    teams = _named(Team, Team.name, brand_id)
    agents = _agents(brand_id)
    enums = {
        kind: [(v, v.replace("_", " ").title()) for v in vs] for kind, vs in engine.CHOICES.items()
    }
    return {
        **enums,
        "status": [(v, v.title()) for v in engine.CHOICES["status"]],
        "action_status": [(v, v.title()) for v in engine.ACTION_STATUSES],
        "channel": _named(Channel, Channel.name, brand_id),
        "tag": _named(Tag, Tag.name, brand_id),
        "team": teams,
        "agent": agents,
        "canned_reply": _named(
            CannedReply, CannedReply.title, brand_id, CannedReply.owner_id.is_(None)
        ),
        "recipient": [(f"team:{v}", f"Team {label}") for v, label in teams]
        + [(f"agent:{v}", label) for v, label in agents],
        "bool": [("true", "Yes"), ("false", "No")],
    }


def action_kind(action: str) -> str:
    """The editor's name for an action's kind: set_status offers fewer statuses than conditions."""
    kind = engine.ACTIONS.get(action, "text")
    return "action_status" if kind == "status" else kind


# Between the form and a rule body -----------------------------------------------------------------


def _rows(form: MultiDict, *names: str) -> list[tuple[int, tuple[str, ...]]]:
    """The form's rows (index, values) that name a field or type; blank rows are left out."""
    columns = [form.getlist(name) for name in names]
    return [
        (index, tuple(value or "" for value in row))
        for index, row in enumerate(zip_longest(*columns))
        if (row[0] or "").strip()
    ]


def _trigger(form: MultiDict) -> dict[str, Any]:
    event = form.get("trigger_event", "")
    if event != IDLE_EVENT:
        return {"event": event}
    minutes = (form.get("idle_minutes") or "").strip()
    return {
        "event": event,
        "idle_minutes": int(minutes) if minutes.isdigit() and len(minutes) <= 9 else minutes,
        "idle_status": form.get("idle_status", ""),
    }


def body_from(form: MultiDict) -> tuple[dict[str, Any], dict[str, dict[int, int]]]:
    """The API's body for the posted form, and for conditions and actions which form row each
    item came from (the errors name items, the page shows rows)."""
    conditions = _rows(form, "condition_field", "condition_op", "condition_value")
    actions = _rows(form, "action_type", "action_value")
    body = {
        "name": form.get("name", ""),
        "enabled": form.get("enabled") is not None,
        "once_per_ticket": form.get("once_per_ticket") is not None,
        "trigger": _trigger(form),
        "conditions": [
            {"field": f, "op": op, "value": typed_condition(f, op, [value])}
            for _i, (f, op, value) in conditions
        ],
        "actions": [{"type": t, "value": typed_action(t, value)} for _i, (t, value) in actions],
    }
    rows = {
        "conditions": {n: index for n, (index, _values) in enumerate(conditions)},
        "actions": {n: index for n, (index, _values) in enumerate(actions)},
    }
    return body, rows


def _row_errors(errors: dict[str, str], rows: dict[str, dict[int, int]]) -> dict[str, str]:
    """`conditions[1].value[0]` from the service as `conditions[3].value` for the form's row 3."""
    shown: dict[str, str] = {}
    for path, message in errors.items():
        name, bracket, rest = path.partition("[")
        if bracket and name in rows and "]" in rest:
            number, _, tail = rest.partition("]")
            row = rows[name].get(int(number), int(number)) if number.isdigit() else number
            part = tail.lstrip(".").split("[")[0] or "_row"
            path = f"{name}[{row}].{part}"
        shown.setdefault(path, message)
    return shown


def _text_of(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(_text_of(item) for item in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def editor_rows(body: dict[str, Any]) -> dict[str, Any]:
    """The editor's rows for a body: its conditions and actions as text, then blank rows."""
    conditions = [
        {"field": c.get("field", ""), "op": c.get("op", ""), "value": _text_of(c.get("value"))}
        for c in body.get("conditions", [])
    ]
    actions = [
        {"type": a.get("type", ""), "value": _text_of(a.get("value"))}
        for a in body.get("actions", [])
    ]
    conditions += [{"field": "", "op": "", "value": ""}] * BLANK_CONDITIONS
    actions += [{"type": "", "value": ""}] * BLANK_ACTIONS
    return {"conditions": conditions, "actions": actions}


def _posted_body(form: MultiDict) -> dict[str, Any]:
    """What the user typed, as the editor shows it again after a refusal (rows kept in place)."""
    columns = ("condition_field", "condition_op", "condition_value")
    conditions = [
        dict(zip(("field", "op", "value"), (v or "" for v in row), strict=True))
        for row in zip_longest(*(form.getlist(name) for name in columns))
    ]
    actions = [
        {"type": t or "", "value": v or ""}
        for t, v in zip_longest(form.getlist("action_type"), form.getlist("action_value"))
    ]
    return {
        "name": form.get("name", ""),
        "enabled": form.get("enabled") is not None,
        "once_per_ticket": form.get("once_per_ticket") is not None,
        "trigger": {
            "event": form.get("trigger_event", ""),
            "idle_minutes": form.get("idle_minutes", ""),
            "idle_status": form.get("idle_status", ""),
        },
        "rows": {"conditions": conditions, "actions": actions},
    }


# Pages --------------------------------------------------------------------------------------------


def _label(names: dict[str, dict[str, str]], kind: str, value: Any) -> str:
    """A value as people know it: the team's name rather than its id."""
    if isinstance(value, list):
        return ", ".join(_label(names, kind, item) for item in value)
    text = _text_of(value) or "nobody"
    return names.get(kind, {}).get(text, text)


def _describe(rule: AutomationRule, names: dict[str, dict[str, str]]) -> str:
    """One line for the list: when, if what, then what."""
    when = EVENT_LABELS.get(rule.event, rule.event)
    if rule.event == IDLE_EVENT:
        idle = IDLE_LABELS.get(rule.idle_status or "", rule.idle_status)
        when = f"A ticket stays {idle} for {rule.idle_minutes} min"
    ifs = []
    for c in rule.conditions or []:
        field, op = c.get("field", ""), c.get("op", "")
        value = _label(names, engine.FIELDS.get(field, "text"), c.get("value"))
        ifs.append(f"{FIELD_LABELS.get(field, field)} {OP_LABELS.get(op, op)} {value}")
    thens = []
    for a in rule.actions or []:
        action = a.get("type", "")
        value = _label(names, action_kind(action), a.get("value"))
        thens.append(f"{ACTION_LABELS.get(action, action).lower()}: {value}")
    parts = [when]
    if ifs:
        parts.append("if " + " and ".join(ifs))
    parts.append("then " + "; ".join(thens))
    return " · ".join(parts)


def _describer(brand_id: int) -> Any:
    names = {kind: dict(pairs) for kind, pairs in choices(brand_id).items()}
    return lambda rule: _describe(rule, names)


def _render_list(errors: dict[str, str] | None = None) -> str:
    return render_template(
        "settings/automations.html",
        rules=rules.list_rules(g.brand.id),
        describe=_describer(g.brand.id),
        templates=rules.TEMPLATES.values(),
        errors=errors or {},
    )


def _render_editor(
    body: dict[str, Any],
    rule: AutomationRule | None = None,
    template: str | None = None,
    errors: dict[str, str] | None = None,
) -> str:
    rows = body.get("rows") or editor_rows(body)
    return render_template(
        "settings/automation_edit.html",
        rule=rule,
        body=body,
        rows=rows,
        template=template,
        errors=errors or {},
        options=choices(g.brand.id),
        field_kinds=engine.FIELDS,
        field_ops=engine.FIELD_OPS,
        action_kinds={action: action_kind(action) for action in engine.ACTIONS},
        field_labels=FIELD_LABELS,
        op_labels=OP_LABELS,
        action_labels=ACTION_LABELS,
        event_labels=EVENT_LABELS,
        idle_labels=IDLE_LABELS,
        list_ops=LIST_OPS,
    )


@bp.get("/settings/automations")
@page(Role.MANAGER)
def automations() -> ResponseReturnValue:
    return _render_list()


@bp.get("/settings/automations/new")
@page(Role.MANAGER)
def new_automation() -> ResponseReturnValue:
    key = request.args.get("template", "")
    if key:
        return _render_editor(rules.from_template(key), template=key)
    body = {"name": "", "enabled": True, "trigger": {"event": "message_received"}}
    return _render_editor(body)


@bp.post("/settings/automations")
@page(Role.MANAGER)
def create_automation() -> ResponseReturnValue:
    body, rows = body_from(request.form)
    template = request.form.get("template") or None
    return attempt(
        lambda: rules.create_rule(g.brand, g.actor, body, template=template),
        lambda rule: f"Created the rule “{rule.name}”; it runs last.",
        url_for(LIST),
        lambda errors: _render_editor(
            _posted_body(request.form), template=template, errors=_row_errors(errors, rows)
        ),
    )


@bp.get("/settings/automations/<int:automation_id>")
@page(Role.MANAGER)
def edit_automation(automation_id: int) -> ResponseReturnValue:
    rule = rules.get_rule(g.brand.id, automation_id)
    return _render_editor(rules.body_of(rule), rule=rule)


@bp.post("/settings/automations/<int:automation_id>")
@page(Role.MANAGER)
def update_automation(automation_id: int) -> ResponseReturnValue:
    rule = rules.get_rule(g.brand.id, automation_id)
    body, rows = body_from(request.form)
    return attempt(
        lambda: rules.update_rule(rule, g.actor, body),
        lambda saved: f"Saved the rule “{saved.name}”.",
        url_for(LIST),
        lambda errors: _render_editor(
            _posted_body(request.form), rule=rule, errors=_row_errors(errors, rows)
        ),
    )


@bp.post("/settings/automations/<int:automation_id>/toggle")
@page(Role.MANAGER)
def toggle_automation(automation_id: int) -> ResponseReturnValue:
    rule = rules.get_rule(g.brand.id, automation_id)
    return attempt(
        lambda: rules.set_enabled(rule, g.actor, not rule.enabled),
        lambda saved: f"“{saved.name}” is {'on' if saved.enabled else 'off'}.",
        url_for(LIST),
        lambda errors: _render_list(errors),
    )


def _move(automation_id: int, up: bool) -> ResponseReturnValue:
    rule = rules.get_rule(g.brand.id, automation_id)
    return attempt(
        lambda: rules.move_rule(rule, g.actor, up),
        lambda moved: (
            f"“{rule.name}” moved {'up' if up else 'down'}."
            if moved
            else f"“{rule.name}” is already {'first' if up else 'last'}."
        ),
        url_for(LIST),
        lambda errors: _render_list(errors),
    )


@bp.post("/settings/automations/<int:automation_id>/up")
@page(Role.MANAGER)
def move_automation_up(automation_id: int) -> ResponseReturnValue:
    return _move(automation_id, up=True)


@bp.post("/settings/automations/<int:automation_id>/down")
@page(Role.MANAGER)
def move_automation_down(automation_id: int) -> ResponseReturnValue:
    return _move(automation_id, up=False)


@bp.post("/settings/automations/<int:automation_id>/delete")
@page(Role.MANAGER)
def delete_automation(automation_id: int) -> ResponseReturnValue:
    rule = rules.get_rule(g.brand.id, automation_id)
    name = rule.name
    return attempt(
        lambda: rules.delete_rule(rule, g.actor),
        f"Deleted the rule “{name}”.",
        url_for(LIST),
        lambda errors: _render_list(errors),
    )


@bp.get("/settings/automations/<int:automation_id>/dry-run")
@page(Role.MANAGER)
def automation_dry_run(automation_id: int) -> ResponseReturnValue:
    """The open tickets the rule would match now; nothing runs and nothing changes."""
    rule = rules.get_rule(g.brand.id, automation_id)
    tickets = engine.dry_run(rule, limit=50)
    return render_template(
        "settings/automation_dry_run.html",
        rule=rule,
        tickets=tickets,
        describe=_describer(g.brand.id),
    )
