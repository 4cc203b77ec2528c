"""The inbox: folders, views, filters and bulk actions."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import (
    abort,
    flash,
    g,
    get_template_attribute,
    jsonify,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue

from helpdesk.errors import Forbidden, NotFound, ValidationError
from helpdesk.inbox import bulk, queries
from helpdesk.inbox.filters import InboxFilter, parse_filter
from helpdesk.inbox.queries import brand_lookups, inbox_page
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


MAX_LIVE_IDS = 200  # a page shows 50 rows; more ids than this is not a page asking


@bp.get("/inbox/updates")
@json_endpoint
def inbox_updates() -> ResponseReturnValue:
    """The live inbox: for a page of the inbox (its filter in the query string) that heard that
    conversations `ids` changed and shows `shown`, the page's ids in order now, those rows
    rendered as the page renders them, and the counts. With `since` instead: how many
    conversations moved since then."""
    if "since" in request.args:
        return _changed_since()
    f = _filter_or_abort()
    result = queries.inbox_refresh(
        f, brand().id, me().id, changed=_id_list("ids"), shown=_id_list("shown")
    )
    row = get_template_attribute("console/_inbox_row.html", "inbox_row")
    return jsonify(
        order=result.order,
        rows={str(item.conversation.id): str(row(item, f)) for item in result.rows},
        has_next=result.has_next,
        folder_counts=result.folder_counts,
        view_counts=result.view_counts,
    )


def _filter_or_abort() -> InboxFilter:
    try:
        return parse_filter(request.args, brand().id, g.role)
    except Forbidden as refused:
        abort(403, description=refused.message)
    except NotFound:
        abort(404)
    except ValidationError as bad:
        abort(400, description=bad.message)


def _id_list(name: str) -> list[int]:
    """`1,2,3`: the conversation ids of a live inbox request."""
    values = [value for value in request.args.get(name, "").split(",") if value.strip()]
    if len(values) > MAX_LIVE_IDS:
        abort(400, description=f"{name}: at most {MAX_LIVE_IDS} ids")
    return [parse_id(value, name) for value in values]


def _changed_since() -> ResponseReturnValue:
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
