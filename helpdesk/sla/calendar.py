"""Business-hours calendars for SLA deadlines: when is a brand open, and when is a target due.

Pure code (no database, no Flask): a calendar is a time zone, weekly open intervals in local wall
time, and closed dates. Deadlines are found by walking the open periods date by date in local time
and converting each local period to UTC for that date, so days on which the clocks change get
exactly the real open time (a 09:00-17:00 day is 8 hours on a DST-change day too, while a local
01:00-05:00 interval is 3 real hours on a spring-forward night and 5 on a fall-back night).

Wall times that do not exist (skipped by a spring-forward) stand for the instant of the jump, and
wall times that occur twice (repeated by a fall-back) mean their first occurrence; that mapping
never goes backwards, so touching intervals and consecutive days never overlap or leave holes.

Targets in calendar hours use ``add_calendar_time`` or the ``CALENDAR_HOURS`` calendar (open 24/7
in UTC, for which ``add_business_time`` is exactly ``start + seconds``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from helpdesk.errors import InvalidField, ValidationError

DAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# A calendar with open days that finds no open time for this many days in a row is treated as
# having none at all, so that a walk over a calendar closed by holidays always ends.
HORIZON_DAYS = 3660

_TIME_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
# One interval as people type it: "9-17", "09:00 - 17:30", "9:00–12:00".
_TYPED_RE = re.compile(r"^(\d{1,2})(?::(\d{2}))?\s*(?:-|–|—|to)\s*(\d{1,2})(?::(\d{2}))?$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TOP_KEYS = frozenset({"timezone", "weekly", "holidays", "holidays_country"})
_FULL_DAY = ((0, 1440),)
_ONE_DAY = timedelta(days=1)

Period = tuple[datetime, datetime]


def _parse_time(value: Any, *, end: bool) -> int:
    """Minutes after midnight of an "HH:MM" string; "24:00" only closes an interval."""
    if not isinstance(value, str):
        raise ValidationError(f"A time must be a string like '09:00', not {value!r}.")
    if end and value == "24:00":
        return 1440
    match = _TIME_RE.match(value)
    if match is None:
        raise ValidationError(
            f"“{value}” is not a time: write hours and minutes like 09:00 (00:00 to 24:00)."
        )
    return int(match.group(1)) * 60 + int(match.group(2))


def _parse_day(
    day: str, intervals: Any
) -> tuple[list[tuple[str, str]], tuple[tuple[int, int], ...]]:
    """Check one day's intervals and return them sorted, as given and in minutes."""
    if isinstance(intervals, (str, bytes)) or not isinstance(intervals, Iterable):
        raise ValidationError(f"The hours of {day!r} must be a list of [open, close] pairs.")
    parsed: list[tuple[int, int, str, str]] = []
    for interval in intervals:
        if isinstance(interval, (str, bytes)) or not isinstance(interval, Iterable):
            raise ValidationError(f"An interval of {day!r} must be a pair [open, close].")
        pair = tuple(interval)
        if len(pair) != 2:
            raise ValidationError(f"An interval of {day!r} must be a pair [open, close].")
        opens, closes = _parse_time(pair[0], end=False), _parse_time(pair[1], end=True)
        if closes <= opens:
            raise ValidationError(
                f"{pair[0]}-{pair[1]} ends before it starts: the end must be after the start. "
                "For hours past midnight, end this day at 24:00 and open the next at 00:00."
            )
        parsed.append((opens, closes, pair[0], pair[1]))
    parsed.sort()
    for before, after in zip(parsed, parsed[1:], strict=False):
        if after[0] < before[1]:
            raise ValidationError(
                f"{before[2]}-{before[3]} and {after[2]}-{after[3]} overlap: "
                "each interval must end before the next one starts."
            )
    return [(p[2], p[3]) for p in parsed], tuple((p[0], p[1]) for p in parsed)


def _parse_date(value: Any) -> date:
    """A holiday as a date: a date object or a "YYYY-MM-DD" string."""
    if isinstance(value, datetime):
        raise ValidationError(f"A holiday is a date, not a date and time: {value!r}.")
    if isinstance(value, date):
        return value
    if isinstance(value, str) and _DATE_RE.match(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ValidationError(f"Bad holiday {value!r}: use YYYY-MM-DD.")


def _load_zone(name: Any) -> ZoneInfo:
    """The ZoneInfo of an IANA name; anything else is a validation error, not a crash."""
    if not isinstance(name, str) or not name:
        raise ValidationError("The time zone must be an IANA name such as 'Europe/Berlin'.")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValidationError(f"Unknown time zone {name!r}.") from exc


def _country_holidays(country: str, year: int) -> frozenset[date]:
    """Public holidays of one country and year, from the optional ``holidays`` package."""
    try:
        import holidays as holidays_package
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ValidationError("Country holidays need the 'holidays' package.") from exc
    try:
        return frozenset(holidays_package.country_holidays(country, years=year).keys())
    except NotImplementedError as exc:
        raise ValidationError(f"Unknown holiday country {country!r}.") from exc


def invalid_fields(problems: Mapping[str, str]) -> InvalidField:
    """One refusal naming every field at fault, so each day's message shows next to that day."""
    (first, message), *_rest = problems.items()
    refused = InvalidField(first, message)
    refused.fields = {name: [text] for name, text in problems.items()}
    refused.message = " ".join(f"{name}: {text}" for name, text in problems.items())
    return refused


def _typed_time(hours: str, minutes: str | None) -> str:
    return f"{int(hours):02d}:{minutes or '00'}"


def parse_day_text(text: str) -> list[tuple[str, str]]:
    """A day's hours as a person types them ("09:00-12:00, 13:00-17:00"; empty when closed)."""
    pairs: list[tuple[str, str]] = []
    for piece in re.split(r"[,;\n]+", text or ""):
        piece = piece.strip()
        if not piece:
            continue
        match = _TYPED_RE.match(piece)
        if match is None:
            raise ValidationError(
                f"“{piece}” is not an interval: write opening and closing times like 09:00-17:00."
            )
        pairs.append((_typed_time(match[1], match[2]), _typed_time(match[3], match[4])))
    return pairs


def day_text(intervals: Iterable[Iterable[str]]) -> str:
    """The inverse of ``parse_day_text``, to fill the form with what is saved."""
    return ", ".join("-".join(pair) for pair in intervals)


def weekly_from_text(texts: Mapping[str, str]) -> dict[str, list[tuple[str, str]]]:
    """Weekly hours from one text per day, every day checked so that all faults show at once."""
    weekly: dict[str, list[tuple[str, str]]] = {}
    problems: dict[str, str] = {}
    for day in DAYS:
        try:
            weekly[day] = _parse_day(day, parse_day_text(texts.get(day, "")))[0]
        except ValidationError as refused:
            problems[f"weekly.{day}"] = refused.message
    if problems:
        raise invalid_fields(problems)
    return weekly


@dataclass(frozen=True)
class BusinessCalendar:
    """Opening hours of a brand, validated on construction so that walks can trust them."""

    timezone: str
    weekly: dict[str, list[tuple[str, str]]] = field(hash=False)
    holidays: frozenset[date] = frozenset()
    holidays_country: str | None = None
    _zone: ZoneInfo = field(init=False, repr=False, compare=False, hash=False)
    _minutes: tuple[tuple[tuple[int, int], ...], ...] = field(
        init=False, repr=False, compare=False, hash=False
    )
    _country_years: dict[int, frozenset[date]] = field(
        init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        zone = _load_zone(self.timezone)
        if not isinstance(self.weekly, Mapping):
            raise ValidationError("The weekly hours must map day keys ('mon'..'sun') to intervals.")
        unknown = [key for key in self.weekly if key not in DAYS]
        if unknown:
            raise ValidationError(f"Unknown day keys {unknown!r}: use {', '.join(DAYS)}.")
        weekly: dict[str, list[tuple[str, str]]] = {}
        minutes: list[tuple[tuple[int, int], ...]] = []
        problems: dict[str, str] = {}
        for day in DAYS:
            try:
                as_given, in_minutes = _parse_day(day, self.weekly.get(day, []))
            except ValidationError as refused:
                problems[f"weekly.{day}"] = refused.message
                continue
            weekly[day] = as_given
            minutes.append(in_minutes)
        if problems:
            raise invalid_fields(problems)
        if isinstance(self.holidays, (str, bytes)) or not isinstance(self.holidays, Iterable):
            raise ValidationError("The holidays must be a list of dates.")
        holidays = frozenset(_parse_date(value) for value in self.holidays)
        country = self.holidays_country
        if country is not None:
            if not isinstance(country, str) or not country:
                raise ValidationError("The holiday country must be a code such as 'DE'.")
            _country_holidays(country, date.today().year)
        object.__setattr__(self, "weekly", weekly)
        object.__setattr__(self, "holidays", holidays)
        object.__setattr__(self, "_zone", zone)
        object.__setattr__(self, "_minutes", tuple(minutes))
        object.__setattr__(self, "_country_years", {})

    @classmethod
    def from_dict(cls, data: Any) -> BusinessCalendar:
        """Build a calendar from the API shape, so that bad input becomes one ValidationError."""
        if not isinstance(data, Mapping):
            raise ValidationError("A calendar must be an object.")
        unknown = sorted(set(data) - _TOP_KEYS)
        if unknown:
            raise ValidationError(f"Unknown calendar fields {unknown!r}.")
        if "timezone" not in data:
            raise ValidationError("A calendar needs a time zone.")
        holidays = data.get("holidays")
        return cls(
            timezone=data["timezone"],
            weekly=data.get("weekly", {}),
            holidays=[] if holidays is None else holidays,
            holidays_country=data.get("holidays_country"),
        )

    def to_dict(self) -> dict[str, Any]:
        """The API shape, the inverse of ``from_dict``, with every day and sorted holidays."""
        return {
            "timezone": self.timezone,
            "weekly": {
                day: [[opens, closes] for opens, closes in self.weekly[day]] for day in DAYS
            },
            "holidays": [d.isoformat() for d in sorted(self.holidays)],
            "holidays_country": self.holidays_country,
        }

    @property
    def zone(self) -> ZoneInfo:
        """The ZoneInfo of ``timezone``, loaded once."""
        return self._zone

    def has_open_days(self) -> bool:
        """Whether any weekday has hours, because otherwise no walk can ever end."""
        return any(self._minutes)

    def is_holiday(self, day: date) -> bool:
        """Whether a local date is closed all day, from the list or from the country's holidays."""
        if day in self.holidays:
            return True
        if self.holidays_country is None:
            return False
        year_dates = self._country_years.get(day.year)
        if year_dates is None:
            year_dates = _country_holidays(self.holidays_country, day.year)
            self._country_years[day.year] = year_dates
        return day in year_dates

    def _is_always_open(self) -> bool:
        """Open around the clock every day without closed dates: deadlines are plain additions."""
        return (
            not self.holidays
            and self.holidays_country is None
            and all(day == _FULL_DAY for day in self._minutes)
        )

    def _to_utc(self, day: date, minutes: int) -> datetime:
        """The UTC instant of a local wall time; skipped times map to the jump, repeated to the
        first occurrence, which keeps the mapping monotonic."""
        if minutes == 1440:
            day, minutes = day + _ONE_DAY, 0
        local = datetime.combine(day, time(minutes // 60, minutes % 60), tzinfo=self._zone)
        before = local.utcoffset()
        after = local.replace(fold=1).utcoffset()
        if before is None or after is None or after <= before:
            return local.astimezone(UTC)
        return self._transition(local, after)

    def _transition(self, local: datetime, after: timedelta) -> datetime:
        """The instant of the spring-forward jump that skipped ``local``, found by bisection."""
        naive = local.replace(tzinfo=None)
        low = int((naive - after).replace(tzinfo=UTC).timestamp())
        high = int(local.timestamp())
        while high - low > 1:
            middle = (low + high) // 2
            if datetime.fromtimestamp(middle, UTC).astimezone(self._zone).utcoffset() == after:
                high = middle
            else:
                low = middle
        return datetime.fromtimestamp(high, UTC)

    def day_periods(self, day: date) -> list[Period]:
        """The open periods of one local date as UTC (start, end) pairs, in order."""
        if self.is_holiday(day):
            return []
        periods: list[Period] = []
        for opens, closes in self._minutes[day.weekday()]:
            start, end = self._to_utc(day, opens), self._to_utc(day, closes)
            if end > start:
                periods.append((start, end))
        return periods

    def periods_from(self, at: datetime) -> Iterator[Period]:
        """Open periods that end after ``at``, in order, forever; stops with a ValidationError
        when the calendar has no open time at all."""
        if not self.has_open_days():
            raise ValidationError("The calendar has no open hours at all.")
        day = at.astimezone(self._zone).date() - _ONE_DAY
        closed_days = 0
        while True:
            periods = self.day_periods(day)
            if periods:
                closed_days = 0
            else:
                closed_days += 1
                if closed_days > HORIZON_DAYS:
                    raise ValidationError("The calendar has no open hours within ten years.")
            for start, end in periods:
                if end > at:
                    yield start, end
            day += _ONE_DAY


CALENDAR_HOURS = BusinessCalendar(timezone="UTC", weekly={d: [("00:00", "24:00")] for d in DAYS})


def always_open() -> BusinessCalendar:
    """A calendar open 24/7 in UTC, so that targets in calendar hours use the same functions."""
    return CALENDAR_HOURS


def _utc(value: datetime, name: str) -> datetime:
    """An aware datetime in UTC; naive ones are refused because their instant is unknown."""
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(f"{name} must be a timezone-aware datetime.")
    return value.astimezone(UTC)


def _duration(seconds: float) -> float:
    """A finite, non-negative number of seconds."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise ValidationError("A duration must be a number of seconds.")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValidationError("A duration must be a finite, non-negative number of seconds.")
    return float(seconds)


def add_calendar_time(start: datetime, seconds: float) -> datetime:
    """``start + seconds`` in UTC, for targets counted in calendar time."""
    return _utc(start, "start") + timedelta(seconds=_duration(seconds))


def add_business_time(cal: BusinessCalendar, start: datetime, seconds: float) -> datetime:
    """The instant when ``seconds`` of open time have elapsed after ``start`` (counting from the
    next opening when closed), because SLA targets only run while the brand is open."""
    start = _utc(start, "start")
    remaining = _duration(seconds)
    if cal._is_always_open():
        return start + timedelta(seconds=remaining)
    for opens, closes in cal.periods_from(start):
        begin = max(opens, start)
        available = (closes - begin).total_seconds()
        if remaining <= available:
            return begin + timedelta(seconds=remaining)
        remaining -= available
    raise AssertionError("unreachable: periods_from never ends without raising")


def business_seconds_between(cal: BusinessCalendar, start: datetime, end: datetime) -> float:
    """Open seconds in [start, end), the inverse of ``add_business_time``, for reporting how much
    of a target is used."""
    start, end = _utc(start, "start"), _utc(end, "end")
    if end <= start:
        return 0.0
    if cal._is_always_open():
        return (end - start).total_seconds()
    whole = timedelta(0)
    day = start.astimezone(cal.zone).date() - _ONE_DAY
    last = end.astimezone(cal.zone).date() + _ONE_DAY
    while day <= last:
        for opens, closes in cal.day_periods(day):
            begin, finish = max(opens, start), min(closes, end)
            if finish > begin:
                whole += finish - begin
        day += _ONE_DAY
    return whole.total_seconds()


def is_open(cal: BusinessCalendar, at: datetime) -> bool:
    """Whether the brand is open at an instant, e.g. to pick the out-of-hours auto-reply."""
    at = _utc(at, "at")
    day = at.astimezone(cal.zone).date()
    for offset in (-1, 0, 1):
        for opens, closes in cal.day_periods(day + timedelta(days=offset)):
            if opens <= at < closes:
                return True
    return False


def next_open(cal: BusinessCalendar, at: datetime) -> datetime:
    """``at`` itself when open, else the next opening, to tell customers when to expect a reply."""
    at = _utc(at, "at")
    for opens, _closes in cal.periods_from(at):
        return max(opens, at)
    raise AssertionError("unreachable: periods_from never ends without raising")


def deadline_with_pauses(
    cal: BusinessCalendar,
    start: datetime,
    target_seconds: float,
    pauses: list[tuple[datetime, datetime | None]],
    business: bool,
) -> datetime | None:
    """The due time of an SLA clock that stops during pauses (e.g. waiting on the customer):
    time used before a pause stays used, the rest counts from the resume; None while paused."""
    start = _utc(start, "start")
    target = _duration(target_seconds)
    intervals: list[tuple[datetime, datetime]] = []
    for pause_start, pause_end in pauses:
        if pause_end is None:
            return None
        begin, end = _utc(pause_start, "pause start"), _utc(pause_end, "pause end")
        if end < begin:
            raise ValidationError("A pause cannot end before it starts.")
        intervals.append((begin, end))
    intervals.sort()
    used = 0.0
    cursor = start
    for begin, end in intervals:
        if begin > cursor:
            if business:
                available = business_seconds_between(cal, cursor, begin)
            else:
                available = (begin - cursor).total_seconds()
            if used + available >= target:
                break
            used += available
        cursor = max(cursor, end)
    if business:
        return add_business_time(cal, cursor, target - used)
    return cursor + timedelta(seconds=target - used)
