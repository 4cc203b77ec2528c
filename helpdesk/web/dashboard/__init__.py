"""The managers' dashboard: a brand's response times, SLA compliance, volume and backlog.

Every view runs after `_require_manager`: signed in, with the console's current brand loaded, and
at least the manager role there; the figures come from `helpdesk.metrics.summary` only.
"""

from __future__ import annotations

from flask import Blueprint, render_template
from flask.typing import ResponseReturnValue
from flask_login import current_user
from werkzeug.exceptions import HTTPException

from helpdesk.accounts.models import Role
from helpdesk.extensions import login_manager
from helpdesk.web.auth import wants_json
from helpdesk.web.console.context import load_context, require

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")


@bp.before_request
def _require_manager() -> ResponseReturnValue | None:
    """Agents see their own queue, not the team's numbers: below manager is a 403."""
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    load_context()
    require(Role.MANAGER)
    return None


@bp.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> ResponseReturnValue:
    """The console's error page, so a refused manager still finds the way back."""
    if wants_json():
        return {
            "error": {"code": error.name.lower().replace(" ", "_"), "message": error.description}
        }, error.code
    if error.code not in (400, 403, 404):
        return error
    return render_template(
        "console/error.html", code=error.code, message=error.description
    ), error.code


from helpdesk.web.dashboard import views  # noqa: E402,F401
