"""The agent console: inbox, conversations, search and notifications, server-rendered.

Every view runs after `_require_agent`: signed in, and with the current brand loaded; objects are
loaded through `context.*_or_404`, so another brand's id is a 404 and a missing role a 403.
"""

from __future__ import annotations

from flask import Blueprint, g, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BuildError

from helpdesk import transaction
from helpdesk.delivery.outage import down_channels
from helpdesk.errors import DomainError
from helpdesk.extensions import login_manager
from helpdesk.live import events as live
from helpdesk.live.service import cursor_now
from helpdesk.notifications.service import unread_count
from helpdesk.types import utcnow
from helpdesk.web.auth import wants_json
from helpdesk.web.console.context import load_context
from helpdesk.web.console.formatting import register_filters

bp = Blueprint("console", __name__)


@bp.record_once
def _setup(state) -> None:
    register_filters(state.app)
    state.app.add_template_global(_url_if, "url_if")


def _url_if(endpoint: str, **values) -> str | None:
    """A link to another area (dashboards, settings) only when this install has it."""
    try:
        return url_for(endpoint, **values)
    except BuildError:
        return None


PRIVATE_TYPES = ("text/html", "application/json", "text/csv", "text/event-stream")


@bp.after_app_request
def _no_store(response):
    """What a signed-in agent sees is never kept by the browser: Back reloads the page, so a
    form never shows a state the ticket no longer has (and a shared computer keeps nothing)."""
    if response.mimetype in PRIVATE_TYPES and current_user.is_authenticated:
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.before_request
def _require_agent() -> ResponseReturnValue | None:
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    load_context()
    return None


@bp.context_processor
def _header() -> dict:
    if not g.get("brand"):
        return {}
    return {
        "unread_notifications": unread_count(g.agent.id, g.brand.id),
        # Where the page's live updates start (read in the transaction that read the page).
        "live_cursor": cursor_now(g.brand.id),
        "live_since": utcnow(),
        "live_stream": live.streaming(),
        # Channels whose replies wait for a reconnect: a banner for admins, a notice on their
        # conversations for everyone.
        "down_channels": down_channels(g.brand.id),
    }


@bp.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> ResponseReturnValue:
    if wants_json():
        body = {
            "error": {"code": error.name.lower().replace(" ", "_"), "message": error.description}
        }
        return body, error.code
    if error.code not in (400, 403, 404, 405, 409, 413, 422, 429):
        return error
    return (
        render_template("console/error.html", code=error.code, message=_message(error)),
        error.code,
    )


@bp.errorhandler(DomainError)
def _refused(error: DomainError) -> ResponseReturnValue:
    """A service refusal that no view caught: a missing object is a 404, a role a 403."""
    transaction.rollback()
    status = error.status if error.status in (403, 404) else 400
    if wants_json():
        return {"error": {"code": error.code, "message": error.message}}, status
    message = "There is nothing here, or it belongs to another brand." if status == 404 else None
    return (
        render_template("console/error.html", code=status, message=message or error.message),
        status,
    )


def _message(error: HTTPException) -> str:
    if error.code == 404:
        return "There is nothing here, or it belongs to another brand."
    return error.description or error.name


from helpdesk.web.console import (  # noqa: E402,F401
    account,
    actions,
    canned,
    contacts,
    conversations,
    inbox,
    live_updates,
    media,
    notifications,
    search,
    vanish,
)
