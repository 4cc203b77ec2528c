"""Settings › CSAT: whether resolved tickets get the satisfaction survey, its question and delay,
a preview of the message with its five buttons, and the latest answers (managers and admins)."""

from __future__ import annotations

from typing import Any

from flask import g, render_template, request, url_for
from flask.typing import ResponseReturnValue

from helpdesk.accounts.models import Role
from helpdesk.brands.models import Brand
from helpdesk.brands.settings import update_brand
from helpdesk.csat import answers, survey
from helpdesk.web.settings import bp, page
from helpdesk.web.settings.forms import attempt, submitted

RECENT = 20


def _values(brand: Brand) -> dict[str, Any]:
    return {
        "csat_enabled": brand.csat_enabled,
        "csat_question": brand.csat_question,
        "csat_delay_minutes": brand.csat_delay_minutes,
    }


def _render(errors: dict[str, str], form: dict[str, Any] | None = None) -> str:
    return render_template(
        "settings/csat.html",
        errors=errors,
        form={**_values(g.brand), **(form or {})},
        buttons=survey.quick_replies(0),
        recent=answers.recent(g.brand.id, RECENT),
    )


@bp.get("/settings/csat")
@page(Role.MANAGER)
def csat() -> ResponseReturnValue:
    return _render({})


@bp.post("/settings/csat")
@page(Role.MANAGER)
def save_csat() -> ResponseReturnValue:
    posted = request.form
    changes = {
        "csat_enabled": "csat_enabled" in posted,
        "csat_question": posted.get("csat_question", ""),
        "csat_delay_minutes": posted.get("csat_delay_minutes", ""),
    }
    form = {**submitted(), "csat_enabled": changes["csat_enabled"]}
    return attempt(
        lambda: update_brand(g.brand, g.actor, changes),
        "The satisfaction survey is saved.",
        url_for("settings.csat"),
        lambda errors: _render(errors, form),
    )
