"""Business hours as the settings page changes them: a day's hours as typed, one holiday at a
time, or a country's public holidays for a year. Each change goes through ``set_calendar``, so it
is checked, audited and moves every open clock like a change through the API. Functions flush;
the caller commits."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from helpdesk.accounts.actor import Actor
from helpdesk.accounts.models import Agent, Role
from helpdesk.accounts.service import require_role
from helpdesk.brands.models import Brand
from helpdesk.errors import InvalidField, NotFound, ValidationError
from helpdesk.sla.calendar import weekly_from_text
from helpdesk.sla.clocks import get_calendar
from helpdesk.sla.models import BusinessHours
from helpdesk.sla.policies import set_calendar

_YEAR_RE = re.compile(r"^\d{4}$")
FIRST_YEAR, LAST_YEAR = 1950, 2100


def set_weekly_hours(
    brand: Brand,
    actor: Actor | Agent | None,
    texts: Mapping[str, str],
    now: datetime | None = None,
) -> BusinessHours:
    """Replace the weekly hours from one text per day; hours are counted in the brand's time
    zone, so saving them also moves an older calendar to the zone the brand has now."""
    require_role(actor, brand.id, Role.MANAGER)
    data = get_calendar(brand).to_dict()
    data["weekly"] = weekly_from_text(texts)
    data["timezone"] = brand.timezone
    return set_calendar(brand, actor, data, now)


def _holiday(value: Any) -> date:
    if isinstance(value, str) and value.strip():
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise InvalidField("date", "Pick a date, such as 2026-12-25.")


def _with_holidays(
    brand: Brand, actor: Actor | Agent | None, holidays: set[date], now: datetime | None
) -> BusinessHours:
    data = get_calendar(brand).to_dict()
    data["holidays"] = sorted(day.isoformat() for day in holidays)
    return set_calendar(brand, actor, data, now)


def _holidays(brand: Brand) -> set[date]:
    return set(get_calendar(brand).holidays)


def add_holiday(
    brand: Brand, actor: Actor | Agent | None, value: Any, now: datetime | None = None
) -> date:
    """Close the brand for one whole local date."""
    require_role(actor, brand.id, Role.MANAGER)
    day = _holiday(value)
    holidays = _holidays(brand)
    if day in holidays:
        raise InvalidField("date", f"{day:%d %B %Y} is already a holiday.")
    _with_holidays(brand, actor, holidays | {day}, now)
    return day


def remove_holiday(
    brand: Brand, actor: Actor | Agent | None, value: Any, now: datetime | None = None
) -> date:
    """Open the brand again on a date that was a holiday."""
    require_role(actor, brand.id, Role.MANAGER)
    try:
        day = _holiday(value)
    except InvalidField as refused:
        raise ValidationError("Choose a holiday of the list to remove.") from refused
    holidays = _holidays(brand)
    if day not in holidays:
        raise NotFound("no such holiday")
    _with_holidays(brand, actor, holidays - {day}, now)
    return day


def countries() -> list[tuple[str, str]]:
    """(code, name) of every country the ``holidays`` package knows, by name."""
    import holidays as holidays_package
    from holidays.registry import COUNTRIES

    names = {entry[1]: module.replace("_", " ").title() for module, entry in COUNTRIES.items()}
    codes = [code for code in holidays_package.list_supported_countries() if len(code) == 2]
    return sorted(((code, names.get(code, code)) for code in codes), key=lambda pair: pair[1])


def _year(value: Any) -> int:
    text = str(value).strip() if value is not None else ""
    if not _YEAR_RE.match(text) or not FIRST_YEAR <= int(text) <= LAST_YEAR:
        raise InvalidField("year", f"Write a year between {FIRST_YEAR} and {LAST_YEAR}.")
    return int(text)


def import_holidays(
    brand: Brand, actor: Actor | Agent | None, country: Any, year: Any, now: datetime | None = None
) -> int:
    """Add a country's public holidays of one year, skipping dates already listed; returns
    how many were added."""
    require_role(actor, brand.id, Role.MANAGER)
    import holidays as holidays_package

    code = country.strip().upper() if isinstance(country, str) else ""
    if code not in holidays_package.list_supported_countries():
        raise InvalidField("country", "Pick a country from the list.")
    chosen_year = _year(year)
    public = set(holidays_package.country_holidays(code, years=chosen_year))
    holidays = _holidays(brand)
    added = public - holidays
    if added:
        _with_holidays(brand, actor, holidays | added, now)
    return len(added)
