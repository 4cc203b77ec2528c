"""The query of a dashboard request: a range of brand-local dates and the clock to count in."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from helpdesk.errors import ValidationError
from helpdesk.metrics.summary import check_range
from helpdesk.web.console.context import timezone

DEFAULT_DAYS = 30
MAX_DAYS = 366


@dataclass(frozen=True)
class Period:
    start: date
    end: date
    business_hours: bool

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def query(self, **extra: str) -> dict[str, str]:
        """The URL arguments that reproduce this period, for links and the CSV export."""
        args = {
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "business_hours": "1" if self.business_hours else "0",
        }
        return {**args, **extra}


def default_period(business_hours: bool = False) -> Period:
    """The last 30 days up to today in the brand's time zone, which is what rollups are keyed by."""
    today = datetime.now(timezone()).date()
    return Period(today - timedelta(days=DEFAULT_DAYS - 1), today, business_hours)


def _date(value: str, what: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{what} is not a date (YYYY-MM-DD)") from None


def parse_period(args: Mapping[str, str]) -> tuple[Period, str | None]:
    """The period asked, or the default one and the reason the asked one was refused."""
    business_hours = args.get("business_hours", "0") == "1"
    raw_from, raw_to = args.get("from", "").strip(), args.get("to", "").strip()
    fallback = default_period(business_hours)
    if not raw_from and not raw_to:
        return fallback, None
    try:
        start = _date(raw_from, "from") if raw_from else fallback.start
        end = _date(raw_to, "to") if raw_to else fallback.end
        if start > end:
            raise ValueError("from is after to")
        if (end - start).days + 1 > MAX_DAYS:
            raise ValueError(f"a range is at most {MAX_DAYS} days")
        check_range(start, end)
    except ValueError as bad:
        return fallback, f"{bad}: showing the last {DEFAULT_DAYS} days instead."
    except ValidationError as bad:
        return fallback, f"{bad.message}: showing the last {DEFAULT_DAYS} days instead."
    return Period(start, end, business_hours), None
