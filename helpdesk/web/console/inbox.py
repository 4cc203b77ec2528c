"""The inbox: folders, views, filters and bulk actions."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import abort, flash, g, jsonify, render_template, request, url_for
from flask.typing import ResponseReturnValue

from helpdesk.errors import Forbidden, NotFound, ValidationError
from helpdesk.inbox import bulk, queries
from helpdesk.inbox.queries import InboxFilter, brand_lookups, inbox_page, parse_filter
from helpdesk.types import utcnow
from helpdesk.web.console import bp
from helpdesk.web.console.context import brand, me, parse_id, perform
from helpdesk.web.console.json import json_endpoint


@bp.get("/inbox")
def inbox() -> ResponseReturnValue:
    try:
        f = parse_filter(request.args, brand().id, g.role)
    except Forbidden as refused:
        abort(403, description=refused.message)
    except NotFound:
        abort(404)
    except ValidationError as bad:
        flash(f"{bad.message}: showing the default inbox instead.", "error")
        f = InboxFilter()
    page = inbox_page(f, brand().id, me().id)
    return render_template(
        "console/inbox.html", page=page, lookups=brand_lookups(brand().id), now=utcnow()
    )


def _selected_ids() -> list[int]:
    ids = [parse_id(value, "ids") for value in request.form.getlist("ids")]
    if None in ids:
        abort(400, description="a selection is a list of conversation ids")
    return ids


def _assignee() -> int | None:
    """`me`, an agent's id, or empty for nobody; anything else is refused, not read as nobody."""
    value = request.form.get("assignee_id", "")
    if value == "me":
        return me().id
    return parse_id(value, "assignee_id")


@bp.post("/inbox/bulk")
def bulk_action() -> ResponseReturnValue:
    conversations = queries.conversations_of_brand(_selected_ids(), brand().id)
    return perform(
        lambda: _report(
            bulk.apply_bulk(
                conversations,
                request.form.get("bulk_action", ""),
                me(),
                assignee_id=_assignee(),
                tag=request.form.get("tag"),
            )
        ),
        None,
        url_for(".inbox"),
    )


def _report(result: bulk.BulkResult) -> bulk.BulkResult:
    if result.done:
        flash(f"Updated {result.done} conversation{'s' * (result.done != 1)}.", "success")
    for reason in result.skipped[:10]:
        flash(f"Skipped {reason}", "error")
    return result


@bp.get("/inbox/updates")
@json_endpoint
def inbox_updates() -> ResponseReturnValue:
    """Polled by the inbox page: has anything arrived since it was rendered?"""
    try:
        since = datetime.fromisoformat(request.args.get("since", ""))
    except ValueError:
        abort(400, description="since: an ISO 8601 time")
    if since.tzinfo is None:
        abort(400, description="since: include the time zone")
    try:
        since = since.astimezone(UTC)
    except OverflowError:  # 0001-01-01 east of UTC: before the first representable time
        abort(400, description="since: out of range")
    return jsonify(changed=queries.changed_since(brand().id, since), now=utcnow().isoformat())
