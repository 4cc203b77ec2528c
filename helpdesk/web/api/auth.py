"""Bearer tokens: each acts for one brand with a role.

The API acts as the system in the services (actor None): a token is no agent, so the services'
role checks, which take an agent, are done here from the token's role before a view runs.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from flask import Response, current_app, g, request
from sqlalchemy import or_, update

from helpdesk.accounts.models import Role
from helpdesk.accounts.tokens import ApiToken, authenticate
from helpdesk.errors import Forbidden
from helpdesk.extensions import db
from helpdesk.types import utcnow
from helpdesk.web.api.errors import error_response

LAST_USED_EVERY = timedelta(minutes=1)

View = TypeVar("View", bound=Callable)


def requires(role: Role) -> Callable[[View], View]:
    """Mark a view as needing at least `role`; views left unmarked need the agent role."""

    def mark(view: View) -> View:
        view.api_role = role
        return view

    return mark


def brand_id() -> int:
    """The brand the request's token acts for."""
    return g.api_brand_id


def require_token_role(role: Role, what: str) -> None:
    """For a rule finer than the view's: some changes of a view need a higher role."""
    if g.api_role.rank < role.rank:
        raise Forbidden(f"{what} needs a {role.value} token")


def authenticate_request() -> tuple[Response, int] | None:
    """401 without a valid token, 403 when its role is below the view's; before any lookup."""
    scheme, _, raw = request.headers.get("Authorization", "").partition(" ")
    token = authenticate(raw.strip()) if scheme.lower() == "bearer" else None
    if token is None:
        return error_response(401, "unauthorized", "a valid API token is required (Bearer)")
    g.api_brand_id, g.api_role = token.brand_id, Role(token.role)
    g.api_token_id = token.id
    _touch(token)
    view = current_app.view_functions.get(request.endpoint)
    needed = getattr(view, "api_role", Role.AGENT)
    if g.api_role.rank < needed.rank:
        return error_response(403, "forbidden", f"this needs a {needed.value} token")
    return None


def _touch(token: ApiToken) -> None:
    """Record use at most once a minute, so a busy integration does not write on every call."""
    now = utcnow()
    if token.last_used_at is not None and now - token.last_used_at < LAST_USED_EVERY:
        return
    db.session.execute(
        update(ApiToken)
        .where(
            ApiToken.id == token.id,
            or_(ApiToken.last_used_at.is_(None), ApiToken.last_used_at < now - LAST_USED_EVERY),
        )
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
