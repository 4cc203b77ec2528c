"""Settings: how long the brand keeps conversations, and what the daily purge last removed."""

from __future__ import annotations

from typing import Any

from flask import g, render_template, request, url_for
from flask.typing import ResponseReturnValue

from helpdesk.accounts.models import Role
from helpdesk.brands.settings import update_brand
from helpdesk.privacy.retention import last_purge
from helpdesk.web.settings import bp, page
from helpdesk.web.settings.forms import attempt, submitted


def _last_purge() -> dict[str, Any] | None:
    """The latest purge's time and counts, from its audit row (the counts are all it holds)."""
    event = last_purge(g.brand.id)
    if event is None:
        return None
    counts = (event.changes.get("purged") or [None, {}])[1] or {}
    return {
        "at": event.at,
        "counts": [(name.replace("_", " "), n) for name, n in counts.items() if n],
    }


def _render(errors: dict[str, str], form: dict[str, Any] | None = None) -> str:
    retention = g.brand.retention_days
    return render_template(
        "settings/privacy.html",
        errors=errors,
        form={"retention_days": "" if retention is None else retention, **(form or {})},
        last_purge=_last_purge(),
    )


@bp.get("/settings/privacy")
@page(Role.ADMIN)
def privacy() -> ResponseReturnValue:
    return _render({})


@bp.post("/settings/privacy")
@page(Role.ADMIN)
def save_privacy() -> ResponseReturnValue:
    changes = {"retention_days": request.form.get("retention_days", "")}
    form = submitted()
    return attempt(
        lambda: update_brand(g.brand, g.actor, changes),
        "The retention period is saved.",
        url_for("settings.privacy"),
        lambda errors: _render(errors, form),
    )
