"""Settings: the brand's name, time zone, reopen period and how message requests are sorted."""

from __future__ import annotations

from typing import Any

from flask import g, render_template, request, url_for
from flask.typing import ResponseReturnValue

from helpdesk.accounts.models import Role
from helpdesk.brands.models import Brand
from helpdesk.brands.settings import time_zones, update_brand
from helpdesk.web.settings import bp, page
from helpdesk.web.settings.forms import attempt, submitted


def _values(brand: Brand) -> dict[str, Any]:
    return {
        "name": brand.name,
        "timezone": brand.timezone,
        "reopen_days": brand.reopen_days,
        "followers_are_known": brand.followers_are_known,
        "accept_all_requests": brand.accept_all_requests,
        "hidden_words": "\n".join(brand.hidden_words or []),
    }


def _render(errors: dict[str, str], form: dict[str, Any] | None = None) -> str:
    zones = time_zones()
    current = (form or {}).get("timezone") or g.brand.timezone
    if current not in zones:
        zones = (current, *zones)
    return render_template(
        "settings/brand.html",
        errors=errors,
        form={**_values(g.brand), **(form or {})},
        zone_options=[(zone, zone.replace("_", " ")) for zone in zones],
    )


@bp.get("/settings/brand")
@page(Role.ADMIN)
def brand() -> ResponseReturnValue:
    return _render({})


@bp.post("/settings/brand")
@page(Role.ADMIN)
def save_brand() -> ResponseReturnValue:
    posted = request.form
    changes = {
        "name": posted.get("name", ""),
        "timezone": posted.get("timezone", ""),
        "reopen_days": posted.get("reopen_days", ""),
        "followers_are_known": "followers_are_known" in posted,
        "accept_all_requests": "accept_all_requests" in posted,
        "hidden_words": posted.get("hidden_words", "").splitlines(),
    }
    form = {
        **submitted(),
        "followers_are_known": changes["followers_are_known"],
        "accept_all_requests": changes["accept_all_requests"],
    }
    return attempt(
        lambda: update_brand(g.brand, g.actor, changes),
        "The brand's settings are saved.",
        url_for("settings.brand"),
        lambda errors: _render(errors, form),
    )
