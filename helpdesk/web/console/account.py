"""The agent's own settings from the header: current brand and availability."""

from __future__ import annotations

from flask import abort, flash, g, request, session, url_for
from flask.typing import ResponseReturnValue

from helpdesk.assignment.service import set_availability
from helpdesk.web.console import bp
from helpdesk.web.console.context import BRAND_KEY, back, me, perform


@bp.post("/brand")
def switch_brand() -> ResponseReturnValue:
    """Work in another brand the agent belongs to; any other brand does not exist here."""
    value = request.form.get("brand_id", "")
    wanted = int(value) if value.isascii() and value.isdigit() else None
    choice = next((b for b in g.brands if b.id == wanted), None)
    if choice is None:
        abort(404)
    session[BRAND_KEY] = choice.id
    flash(f"Now working in {choice.name}.", "success")
    return back(url_for(".inbox"))


@bp.post("/availability")
def availability() -> ResponseReturnValue:
    """Going online also hands this agent the tickets waiting in their teams' queues."""
    value = request.form.get("availability", "")
    return perform(
        lambda: set_availability(me(), value),
        f"You are {value}.",
        url_for(".inbox"),
    )
