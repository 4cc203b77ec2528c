"""Bearer tokens: each acts for one brand with a role, as an `Actor` the services receive.

The services hold the role rules (`Actor.require`). A view may also be marked with the least
role it needs (`requires`), checked through the same `Actor.require` before any lookup or body
parsing, so a token below it learns nothing about ids or bodies (403 before 404 or 422).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from flask import Response, current_app, g, request

from helpdesk import transaction
from helpdesk.accounts.actor import Actor
from helpdesk.accounts.models import Role
from helpdesk.accounts.tokens import authenticate, touch
from helpdesk.errors import Forbidden
from helpdesk.web.api.errors import error_response

View = TypeVar("View", bound=Callable)


def requires(role: Role) -> Callable[[View], View]:
    """Mark a view as needing at least `role`; views left unmarked need the agent role."""

    def mark(view: View) -> View:
        # Functions take attributes (and functools.wraps carries them to the API's wrappers);
        # Callable's type does not say so.
        view.api_role = role  # type: ignore[attr-defined]
        return view

    return mark


def brand_id() -> int:
    """The brand the request's token acts for."""
    return g.api_brand_id


def actor() -> Actor:
    """Who acts in this request: the token, with its brand and role."""
    return g.api_actor


def authenticate_request() -> tuple[Response, int] | None:
    """401 without a valid token, 403 when its role is below the view's; before any lookup."""
    scheme, _, raw = request.headers.get("Authorization", "").partition(" ")
    token = authenticate(raw.strip()) if scheme.lower() == "bearer" else None
    if token is None:
        return error_response(401, "unauthorized", "a valid API token is required (Bearer)")
    g.api_actor = Actor.for_token(token)
    g.api_brand_id, g.api_role = token.brand_id, Role(token.role)
    g.api_token_id = token.id
    if touch(token):
        transaction.commit()
    view = current_app.view_functions.get(request.endpoint)
    try:
        g.api_actor.require(getattr(view, "api_role", Role.AGENT))
    except Forbidden as refused:
        return error_response(403, "forbidden", refused.message)
    return None
