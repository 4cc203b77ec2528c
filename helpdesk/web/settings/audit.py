"""Settings: the audit log, newest first, filtered by actor, kind of thing, action and dates.

A read-only page: the filters are a GET form, the "Older" link carries the last row's key (the
same keyset pages as the API), so rows recorded meanwhile never shift a page.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import g, render_template, request
from flask.typing import ResponseReturnValue
from sqlalchemy import Select, select

from helpdesk.accounts.models import Agent, Membership, Role
from helpdesk.audit import service as audit
from helpdesk.errors import InvalidField
from helpdesk.extensions import db
from helpdesk.keyset import keyset_page
from helpdesk.web.api.pagination import decode_cursor, encode_cursor
from helpdesk.web.console.context import timezone
from helpdesk.web.settings import bp, page

PAGE_SIZE = 50
FILTERS = ("actor", "target_type", "action", "since", "until")


def _actor_options(brand_id: int) -> list[tuple[str, str]]:
    agents = db.session.execute(
        select(Agent.id, Agent.name)
        .join(Membership, Membership.agent_id == Agent.id)
        .where(Membership.brand_id == brand_id)
        .order_by(Agent.name, Agent.id)
    ).all()
    return [
        ("", "Anyone"),
        *((f"agent:{agent_id}", name) for agent_id, name in agents),
        ("token", "API tokens"),
        ("system", "The system"),
    ]


def _filter(field: str, parse: Callable[[], Any], errors: dict[str, str]) -> Any:
    """One filter's value; a refused one is reported on its own field and filters nothing."""
    try:
        return parse()
    except InvalidField as refused:
        errors[field] = refused.fields[field][0]
        return None


def _query(brand_id: int, form: dict[str, str], errors: dict[str, str]) -> Select:
    """The listing the filters ask for."""
    zone = timezone()
    actor = _filter("actor", lambda: audit.parse_actor(form["actor"]), errors) or (None, None)
    return audit.events_query(
        brand_id,
        since=_filter("since", lambda: audit.local_day(form["since"], zone, "since"), errors),
        until=_filter("until", lambda: audit.local_day(form["until"], zone, "until", True), errors),
        actor_type=actor[0],
        actor_id=actor[1],
        target_type=_filter(
            "target_type", lambda: audit.parse_target_type(form["target_type"]), errors
        ),
        action=form["action"][:64] or None,
    )


def _after(cursor: str, errors: dict[str, str]) -> list[Any] | None:
    """The last row the reader saw, from the "Older" link."""
    if not cursor:
        return None
    try:
        return decode_cursor(audit.ORDER, cursor)
    except InvalidField:
        errors["_form"] = "This page of the log is not available: start again from the newest."
        return None


@bp.get("/settings/audit")
@page(Role.ADMIN)
def audit_log() -> ResponseReturnValue:
    form = {name: request.args.get(name, "").strip() for name in FILTERS}
    errors: dict[str, str] = {}
    query = _query(g.brand.id, form, errors)
    events: list[Any] = []
    older = None
    after = _after(request.args.get("cursor", ""), errors)
    if not errors:
        events, last = keyset_page(query, audit.ORDER, after, PAGE_SIZE)
        older = encode_cursor(audit.ORDER, last) if last is not None else None
    page_html = render_template(
        "settings/audit.html",
        events=events,
        older={**{k: v for k, v in form.items() if v}, "cursor": older} if older else None,
        form=form,
        errors=errors,
        actors=_actor_options(g.brand.id),
        target_types=[("", "Anything")]
        + [(kind, audit.target_words(kind)) for kind in audit.TARGET_TYPES],
        audit=audit,
    )
    return page_html, 422 if errors else 200
