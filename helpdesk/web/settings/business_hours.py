"""Settings: the brand's weekly hours and holidays, with when a message now would be due."""

from __future__ import annotations

from typing import Any

from flask import g, render_template, request, url_for
from flask.typing import ResponseReturnValue

from helpdesk.accounts.models import Role
from helpdesk.sla import hours
from helpdesk.sla import preview as sla_preview
from helpdesk.sla.calendar import DAYS, day_text
from helpdesk.sla.clocks import get_calendar
from helpdesk.types import utcnow
from helpdesk.web.settings import bp, page
from helpdesk.web.settings.forms import attempt, submitted

DAY_NAMES = dict(zip(DAYS, ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday",
                            "Saturday", "Sunday"), strict=True))  # fmt: skip
HERE = "settings.business_hours"


def _render(errors: dict[str, str] | None = None, form: dict[str, Any] | None = None) -> str:
    calendar = get_calendar(g.brand)
    now = utcnow()
    weekly = {day: day_text(calendar.weekly[day]) for day in DAYS}
    return render_template(
        "settings/business_hours.html",
        errors=errors or {},
        form=form or {},
        days=[(day, DAY_NAMES[day], weekly[day]) for day in DAYS],
        calendar=calendar,
        holidays=sorted(calendar.holidays),
        countries=hours.countries(),
        preview=sla_preview.preview(g.brand.id, now),
        local_time=lambda at: sla_preview.local_time(at, calendar.zone, now),
        this_year=now.astimezone(calendar.zone).year,
    )


@bp.get("/settings/business-hours")
@page(Role.MANAGER)
def business_hours() -> ResponseReturnValue:
    return _render()


@bp.post("/settings/business-hours")
@page(Role.MANAGER)
def save_business_hours() -> ResponseReturnValue:
    texts = {day: request.form.get(f"weekly.{day}", "") for day in DAYS}
    return attempt(
        lambda: hours.set_weekly_hours(g.brand, g.actor, texts),
        "Business hours saved.",
        url_for(HERE),
        lambda errors: _render(errors, submitted()),
    )


@bp.post("/settings/business-hours/holidays")
@page(Role.MANAGER)
def add_holiday() -> ResponseReturnValue:
    return attempt(
        lambda: hours.add_holiday(g.brand, g.actor, request.form.get("date")),
        lambda day: f"{day:%A %d %B %Y} added as a holiday.",
        url_for(HERE),
        lambda errors: _render(errors, submitted()),
    )


@bp.post("/settings/business-hours/holidays/remove")
@page(Role.MANAGER)
def remove_holiday() -> ResponseReturnValue:
    return attempt(
        lambda: hours.remove_holiday(g.brand, g.actor, request.form.get("date")),
        lambda day: f"{day:%A %d %B %Y} is no longer a holiday.",
        url_for(HERE),
        lambda errors: _render(errors),
    )


def _imported(count: int) -> str:
    if count == 0:
        return "No holidays added: every public holiday of that year was already listed."
    return f"{count} public holiday{'s' if count != 1 else ''} added."


@bp.post("/settings/business-hours/holidays/import")
@page(Role.MANAGER)
def import_holidays() -> ResponseReturnValue:
    form = request.form
    return attempt(
        lambda: hours.import_holidays(g.brand, g.actor, form.get("country"), form.get("year")),
        _imported,
        url_for(HERE),
        lambda errors: _render(errors, submitted()),
    )
