"""Settings: the brand's API tokens (admins). A new token's secret is shown once, on the page the
creation redirects to; only its hash is kept, so a lost token is revoked and replaced."""

from __future__ import annotations

from flask import g, render_template, request, url_for
from flask.typing import ResponseReturnValue

from helpdesk.accounts import api_tokens
from helpdesk.accounts.models import Role
from helpdesk.accounts.tokens import ApiToken
from helpdesk.web.settings import bp, once, page
from helpdesk.web.settings.forms import attempt, submitted

ONCE = "api_token"


def _render(errors: dict[str, str], form: dict, secret: str | None = None) -> str:
    return render_template(
        "settings/api_tokens.html",
        tokens=api_tokens.list_tokens(g.brand.id, g.actor),
        roles=[(role.value, role.value.title()) for role in api_tokens.ROLES],
        errors=errors,
        form=form,
        secret=secret,
    )


@bp.get("/settings/api-tokens", endpoint="api_tokens")
@page(Role.ADMIN)
def tokens_page() -> ResponseReturnValue:
    return _render({}, {"role": Role.AGENT.value}, once.take(ONCE))


@bp.post("/settings/api-tokens")
@page(Role.ADMIN)
def create_api_token() -> ResponseReturnValue:
    def create() -> tuple[ApiToken, str]:
        name, role = request.form.get("name", ""), request.form.get("role", "")
        return api_tokens.issue(g.brand, g.actor, name, role)

    return attempt(
        create,
        lambda made: f"Token “{made[0].name}” created.",
        url_for("settings.api_tokens"),
        lambda errors: _render(errors, submitted()),
        after=lambda made: once.keep(ONCE, made[1]),  # once committed, never in the URL
    )


@bp.post("/settings/api-tokens/<int:token_id>/revoke")
@page(Role.ADMIN)
def revoke_api_token(token_id: int) -> ResponseReturnValue:
    return attempt(
        lambda: api_tokens.revoke(g.brand.id, g.actor, token_id),
        lambda row: f"Token “{row.name}” revoked: it no longer works.",
        url_for("settings.api_tokens"),
        lambda errors: _render(errors, {}),
    )
