"""Settings: the signed-in agent's own account (being built)."""

from __future__ import annotations

from flask import render_template
from flask.typing import ResponseReturnValue

from helpdesk.accounts.models import Role
from helpdesk.web.settings import bp, page


@bp.get("/account")
@page(Role.AGENT)
def account() -> ResponseReturnValue:
    return render_template("settings/account.html", errors={}, form={})
