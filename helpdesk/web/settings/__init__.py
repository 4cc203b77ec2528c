"""The settings console: pages of forms over the same services as the API, by role.

Every view runs after `_require_agent` (signed in, brand loaded, as in the console) and declares
the least role that may open it with `@page(...)`; the services check the same rules again, so a
form posted by someone the page would not have been shown to is refused there too. Another
brand's object is a 404, a missing role a 403, and a refused input re-renders the page with the
message next to its field, nothing saved (`forms.attempt`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from flask import Blueprint, abort, g, render_template
from flask.typing import ResponseReturnValue
from flask_login import current_user
from werkzeug.exceptions import HTTPException

from helpdesk.accounts.models import Role
from helpdesk.errors import DomainError
from helpdesk.extensions import login_manager
from helpdesk.web.console import _header, _http_error, _refused
from helpdesk.web.console.context import load_context

bp = Blueprint("settings", __name__)


@dataclass(frozen=True)
class Page:
    endpoint: str
    title: str
    role: Role
    summary: str


# The settings pages in the order of the side menu; `role` is the least role that opens the page.
PAGES = (
    Page("settings.brand", "Brand", Role.ADMIN, "Name, time zone, reopen period, message requests"),
    Page(
        "settings.channels", "Channels", Role.ADMIN, "Connected Instagram accounts and their status"
    ),
    Page("settings.agents", "Agents", Role.ADMIN, "Invitations, roles, capacity, deactivation"),
    Page("settings.teams", "Teams", Role.MANAGER, "Members, capacity and how tickets are assigned"),
    Page("settings.business_hours", "Business hours", Role.MANAGER, "Weekly hours and holidays"),
    Page("settings.sla_policies", "SLA policies", Role.MANAGER, "Response-time targets, in order"),
    Page(
        "settings.canned_replies", "Canned replies", Role.AGENT, "Saved answers with placeholders"
    ),
    Page("settings.tags", "Tags", Role.MANAGER, "Colours and the keywords that apply them"),
    Page("settings.automations", "Automations", Role.MANAGER, "Rules that act when nobody looks"),
    Page("settings.csat", "CSAT", Role.MANAGER, "The satisfaction survey after resolution"),
    Page("settings.api_tokens", "API tokens", Role.ADMIN, "Tokens for integrations"),
    Page("settings.webhooks", "Webhooks", Role.ADMIN, "Events posted to your systems"),
    Page("settings.privacy", "Privacy", Role.ADMIN, "How long conversations are kept"),
    Page("settings.audit", "Audit log", Role.ADMIN, "Who changed what, and when"),
)


def page(minimum: Role) -> Callable:
    """The least role that opens this view (GET and POST alike); below it, 403."""

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> ResponseReturnValue:
            if g.role.rank < minimum.rank:
                abort(403, description=f"This page needs the {minimum.value} role.")
            return view(*args, **kwargs)

        guarded.minimum_role = minimum  # type: ignore[attr-defined]
        return guarded

    return decorate


def visible_pages() -> list[Page]:
    """The pages the signed-in role may open, for the menu and the index."""
    return [p for p in PAGES if g.role.rank >= p.role.rank]


@bp.before_request
def _require_agent() -> ResponseReturnValue | None:
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    load_context()
    return None


@bp.context_processor
def _settings_menu() -> dict:
    if not g.get("brand"):
        return {}
    return {**_header(), "settings_pages": visible_pages()}


# The console's error pages: 403 and 404 in words, a DomainError no view caught rolled back.
bp.register_error_handler(HTTPException, _http_error)
bp.register_error_handler(DomainError, _refused)


@bp.get("/settings")
@page(Role.MANAGER)
def index() -> ResponseReturnValue:
    return render_template("settings/index.html", pages=visible_pages())


from helpdesk.web.settings import (  # noqa: E402,F401
    account,
    agents,
    api_tokens,
    audit,
    automations,
    brand,
    business_hours,
    canned_replies,
    channels,
    csat,
    instagram,
    privacy,
    sla_policies,
    tags,
    teams,
    webhooks,
)
