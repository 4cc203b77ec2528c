"""Settings: SLA policies in matching order, each with when a message now would be due."""

from __future__ import annotations

import re
from typing import Any

from flask import g, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from helpdesk.accounts.models import Role
from helpdesk.channels.models import Channel
from helpdesk.extensions import db
from helpdesk.sla import policies
from helpdesk.sla import preview as sla_preview
from helpdesk.sla.clocks import TARGET_FIELDS, get_calendar, list_policies
from helpdesk.sla.models import SlaPolicy
from helpdesk.tickets.models import Priority, Tag
from helpdesk.types import utcnow
from helpdesk.web.settings import bp, page
from helpdesk.web.settings.forms import attempt, submitted

HERE = "settings.sla_policies"
TARGETS = [
    ("first_response_min", "First response"),
    ("next_response_min", "Next response"),
    ("resolution_min", "Resolution"),
]
_WHOLE = re.compile(r"^-?\d{1,9}$")


def _number(value: str | None) -> Any:
    """A whole number as typed, blank as None; anything else is passed on for the service to
    refuse in words."""
    text = (value or "").strip()
    if not text:
        return None
    return int(text) if _WHOLE.match(text) else text


def _changes(form: MultiDict) -> dict[str, Any]:
    return {
        "name": form.get("name", ""),
        "conditions": {
            "priority": form.get("priority") or None,
            "tag_id": _number(form.get("tag_id")),
            "channel_id": _number(form.get("channel_id")),
        },
        "targets": {field: _number(form.get(field)) for field in TARGET_FIELDS.values()},
        "business_hours": form.get("business_hours") is not None,
    }


def _values(policy: SlaPolicy) -> dict[str, Any]:
    """A policy as its edit form shows it."""
    values: dict[str, Any] = {
        "name": policy.name,
        "priority": policy.priority or "",
        "tag_id": policy.tag_id or "",
        "channel_id": policy.channel_id or "",
        "business_hours": policy.business_hours,
    }
    values.update({field: getattr(policy, field) or "" for field in TARGET_FIELDS.values()})
    return values


def _render(
    errors: dict[str, str] | None = None,
    form: dict[str, Any] | None = None,
    editing: int | str | None = None,
) -> str:
    brand_id = g.brand.id
    calendar = get_calendar(g.brand)
    now = utcnow()
    rows = list_policies(brand_id)
    tags = db.session.execute(
        select(Tag.id, Tag.name).where(Tag.brand_id == brand_id).order_by(Tag.name)
    ).all()
    channels = list(
        db.session.scalars(select(Channel).where(Channel.brand_id == brand_id).order_by(Channel.id))
    )
    if form is not None and "business_hours" not in form:
        form = {**form, "business_hours": False}
    return render_template(
        "settings/sla_policies.html",
        errors=errors or {},
        form=form,
        editing=editing,
        policies=[
            (policy, _values(policy), sla_preview.targets(calendar, policy, now)) for policy in rows
        ],
        priorities=[("", "Any priority")] + [(p.value, p.value.title()) for p in Priority],
        tags=[("", "Any tag")] + [(str(tag_id), name) for tag_id, name in tags],
        channels=[("", "Any channel")] + [(str(c.id), c.name or c.account_id) for c in channels],
        tag_names=dict(tags),
        channel_names={c.id: c.name or c.account_id for c in channels},
        target_fields=TARGETS,
        local_time=lambda at: sla_preview.local_time(at, calendar.zone, now),
        blank={"business_hours": True},
    )


@bp.get("/settings/sla-policies")
@page(Role.MANAGER)
def sla_policies() -> ResponseReturnValue:
    return _render()


@bp.post("/settings/sla-policies")
@page(Role.MANAGER)
def create_sla_policy() -> ResponseReturnValue:
    changes = _changes(request.form)

    def create() -> SlaPolicy:
        position = policies.last_position(g.brand.id)
        return policies.create_policy(g.brand, g.actor, position=position, **changes)

    return attempt(
        create,
        lambda policy: f"Policy “{policy.name}” added, last in the order.",
        url_for(HERE),
        lambda errors: _render(errors, submitted(), "new"),
    )


@bp.post("/settings/sla-policies/<int:policy_id>")
@page(Role.MANAGER)
def update_sla_policy(policy_id: int) -> ResponseReturnValue:
    policy = policies.get_policy(policy_id, g.brand.id)
    changes = _changes(request.form)
    return attempt(
        lambda: policies.update_policy(policy, g.actor, **changes),
        lambda saved: f"Policy “{saved.name}” saved.",
        url_for(HERE),
        lambda errors: _render(errors, submitted(), policy_id),
    )


@bp.post("/settings/sla-policies/<int:policy_id>/delete")
@page(Role.MANAGER)
def delete_sla_policy(policy_id: int) -> ResponseReturnValue:
    policy = policies.get_policy(policy_id, g.brand.id)
    name = policy.name
    return attempt(
        lambda: policies.delete_policy(policy, g.actor),
        f"Policy “{name}” deleted.",
        url_for(HERE),
        lambda errors: _render(errors),
    )


def _move(policy_id: int, up: bool) -> ResponseReturnValue:
    policy = policies.get_policy(policy_id, g.brand.id)
    return attempt(
        lambda: policies.move_policy(policy, g.actor, up),
        lambda moved: (
            f"“{policy.name}” moved {'up' if up else 'down'}."
            if moved
            else f"“{policy.name}” is already {'first' if up else 'last'}."
        ),
        url_for(HERE),
        lambda errors: _render(errors),
    )


@bp.post("/settings/sla-policies/<int:policy_id>/up")
@page(Role.MANAGER)
def move_sla_policy_up(policy_id: int) -> ResponseReturnValue:
    return _move(policy_id, up=True)


@bp.post("/settings/sla-policies/<int:policy_id>/down")
@page(Role.MANAGER)
def move_sla_policy_down(policy_id: int) -> ResponseReturnValue:
    return _move(policy_id, up=False)
