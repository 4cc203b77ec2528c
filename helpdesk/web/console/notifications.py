"""The notifications panel: SLA warnings and breaches, mentions, assignments."""

from __future__ import annotations

from flask import abort, render_template, url_for
from flask.typing import ResponseReturnValue

from helpdesk.notifications import service as notifications
from helpdesk.web.console import bp
from helpdesk.web.console.context import brand, me, perform

PANEL_LIMIT = 100


@bp.get("/notifications")
def notifications_panel() -> ResponseReturnValue:
    items = notifications.list_for(me().id, brand().id, limit=PANEL_LIMIT)
    return render_template("console/notifications.html", items=items)


@bp.post("/notifications/<int:notification_id>/read")
def notification_read(notification_id: int) -> ResponseReturnValue:
    notification = notifications.find_own(notification_id, me().id, brand().id)
    if notification is None:
        abort(404)
    return perform(
        lambda: notifications.mark_read(me().id, brand().id, [notification.id]),
        None,
        url_for(".notifications_panel"),
    )


@bp.post("/notifications/read-all")
def notifications_read_all() -> ResponseReturnValue:
    return perform(
        lambda: notifications.mark_read(me().id, brand().id),
        "All notifications marked read.",
        url_for(".notifications_panel"),
    )
