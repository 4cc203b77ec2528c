"""Business-hours calendar: deadlines over weekends, holidays, lunch breaks and DST changes, with
every expected instant worked out by hand in a comment rather than by the code under test."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpdesk.errors import ValidationError
from helpdesk.sla.calendar import (
    CALENDAR_HOURS,
    DAYS,
    BusinessCalendar,
    add_business_time,
    add_calendar_time,
    always_open,
    business_seconds_between,
    deadline_with_pauses,
    is_open,
    next_open,
)

HOUR = 3600.0
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def office(tz: str = "Europe/Berlin", holidays: tuple[str, ...] = ()) -> BusinessCalendar:
    """Monday to Friday, 09:00-17:00 local time."""
    return BusinessCalendar.from_dict(
        {
            "timezone": tz,
            "weekly": {day: [["09:00", "17:00"]] for day in WEEKDAYS},
            "holidays": list(holidays),
        }
    )


def every_day(tz: str, opens: str, closes: str) -> BusinessCalendar:
    return BusinessCalendar(timezone=tz, weekly={day: [(opens, closes)] for day in DAYS})


# Weekends, holidays, lunch breaks, closed starts


def test_deadline_skips_the_weekend() -> None:
    # Fri 2026-06-05 15:00 CEST (13:00 UTC) + 4h: 2h until 17:00 Friday, Sat/Sun closed,
    # 2h more from Mon 2026-06-08 09:00 CEST -> 11:00 CEST = 09:00 UTC.
    cal = office()
    start = utc(2026, 6, 5, 13)
    due = add_business_time(cal, start, 4 * HOUR)
    assert due == utc(2026, 6, 8, 9)
    assert due.tzinfo is UTC
    assert business_seconds_between(cal, start, due) == 4 * HOUR
    # The whole weekend, Fri 17:00 CEST to Mon 09:00 CEST, holds no business time.
    assert business_seconds_between(cal, utc(2026, 6, 5, 15), utc(2026, 6, 8, 7)) == 0


def test_deadline_skips_a_holiday() -> None:
    # Thu 2026-12-24 16:00 CET (15:00 UTC) + 2h: 1h until 17:00 Thursday, Fri 25 is a holiday,
    # then the weekend, 1h more from Mon 2026-12-28 09:00 CET -> 10:00 CET = 09:00 UTC.
    cal = office(holidays=("2026-12-25",))
    assert add_business_time(cal, utc(2026, 12, 24, 15), 2 * HOUR) == utc(2026, 12, 28, 9)
    # Without the holiday the second hour is Fri 25 09:00-10:00 CET = 08:00-09:00 UTC.
    assert add_business_time(office(), utc(2026, 12, 24, 15), 2 * HOUR) == utc(2026, 12, 25, 9)
    assert not is_open(cal, utc(2026, 12, 25, 10))


def test_country_holidays_close_the_day() -> None:
    # 2026-05-01 (a Friday) is Labour Day in Germany. Thu 2026-04-30 16:00 CEST + 2h:
    # 1h Thursday, Friday closed, weekend, 1h from Mon 2026-05-04 09:00 -> 10:00 CEST = 08:00 UTC.
    cal = BusinessCalendar(
        timezone="Europe/Berlin",
        weekly={day: [("09:00", "17:00")] for day in WEEKDAYS},
        holidays_country="DE",
    )
    assert cal.is_holiday(date(2026, 5, 1))
    assert add_business_time(cal, utc(2026, 4, 30, 14), 2 * HOUR) == utc(2026, 5, 4, 8)
    with pytest.raises(ValidationError):
        BusinessCalendar(
            timezone="UTC", weekly={"mon": [("09:00", "17:00")]}, holidays_country="XX"
        )


def test_lunch_break_is_not_business_time() -> None:
    # Open 09:00-12:00 and 13:00-17:00 UTC. Mon 2026-01-05 11:00 + 2h: 1h until noon,
    # lunch, 1h from 13:00 -> 14:00.
    cal = BusinessCalendar.from_dict(
        {"timezone": "UTC", "weekly": {"mon": [["13:00", "17:00"], ["09:00", "12:00"]]}}
    )
    assert cal.weekly["mon"] == [("09:00", "12:00"), ("13:00", "17:00")]
    assert add_business_time(cal, utc(2026, 1, 5, 11), 2 * HOUR) == utc(2026, 1, 5, 14)
    # 10:00-14:00 holds 10-12 and 13-14: 3h.
    assert business_seconds_between(cal, utc(2026, 1, 5, 10), utc(2026, 1, 5, 14)) == 3 * HOUR
    # Exactly the morning's remaining hour ends at noon, not at the afternoon opening.
    assert add_business_time(cal, utc(2026, 1, 5, 11), HOUR) == utc(2026, 1, 5, 12)
    assert not is_open(cal, utc(2026, 1, 5, 12, 30))
    assert next_open(cal, utc(2026, 1, 5, 12, 30)) == utc(2026, 1, 5, 13)


def test_counting_starts_at_the_next_opening() -> None:
    cal = office("UTC")
    # Sat 2026-01-10 10:00: closed until Mon 2026-01-12 09:00; +1h -> 10:00.
    assert add_business_time(cal, utc(2026, 1, 10, 10), HOUR) == utc(2026, 1, 12, 10)
    # Mon 07:00 is before opening: 09:00 + 30 min.
    assert add_business_time(cal, utc(2026, 1, 12, 7), 1800) == utc(2026, 1, 12, 9, 30)
    # Mon 17:00 is the closing instant itself: Tue 09:00 + 1h.
    assert add_business_time(cal, utc(2026, 1, 12, 17), HOUR) == utc(2026, 1, 13, 10)
    assert next_open(cal, utc(2026, 1, 10, 10)) == utc(2026, 1, 12, 9)
    assert next_open(cal, utc(2026, 1, 12, 10)) == utc(2026, 1, 12, 10)
    assert is_open(cal, utc(2026, 1, 12, 9))
    assert not is_open(cal, utc(2026, 1, 12, 17))
    # Zero seconds from a closed instant is the next opening.
    assert add_business_time(cal, utc(2026, 1, 10, 10), 0) == utc(2026, 1, 12, 9)


def test_end_before_start_is_zero() -> None:
    cal = office("UTC")
    assert business_seconds_between(cal, utc(2026, 1, 12, 12), utc(2026, 1, 12, 10)) == 0
    assert business_seconds_between(cal, utc(2026, 1, 12, 12), utc(2026, 1, 12, 12)) == 0


def test_start_in_another_zone_gives_utc() -> None:
    # 2026-06-08 11:00 CEST is 09:00 UTC; +1h -> 10:00 UTC.
    due = add_business_time(office(), datetime(2026, 6, 8, 11, tzinfo=BERLIN), HOUR)
    assert due == utc(2026, 6, 8, 10)
    assert due.utcoffset() == timedelta(0)


# Daylight saving time


def test_office_day_is_eight_hours_on_dst_days() -> None:
    # Open every day 09:00-17:00 Berlin. On Sun 2026-03-29 that is 07:00-15:00 UTC (CEST),
    # on Sun 2026-10-25 08:00-16:00 UTC (CET): 8 hours each, however long the day is.
    cal = every_day("Europe/Berlin", "09:00", "17:00")
    for day in (date(2026, 3, 29), date(2026, 10, 25)):
        midnight = datetime(day.year, day.month, day.day, tzinfo=BERLIN)
        next_midnight = datetime(day.year, day.month, day.day + 1, tzinfo=BERLIN)
        assert business_seconds_between(cal, midnight, next_midnight) == 8 * HOUR
    assert add_business_time(cal, utc(2026, 3, 29, 0), 8 * HOUR) == utc(2026, 3, 29, 15)
    assert add_business_time(cal, utc(2026, 10, 25, 0), 8 * HOUR) == utc(2026, 10, 25, 16)


def test_berlin_overnight_spring_forward() -> None:
    # Open 00:00-06:00 daily. Sun 2026-03-29: 00:00 CET = Sat 23:00 UTC; the clocks jump from
    # 02:00 CET to 03:00 CEST; 06:00 CEST = 04:00 UTC. So 5 real hours instead of 6.
    cal = every_day("Europe/Berlin", "00:00", "06:00")
    opening = utc(2026, 3, 28, 23)
    assert business_seconds_between(cal, opening, utc(2026, 3, 29, 12)) == 5 * HOUR
    assert add_business_time(cal, opening, 5 * HOUR) == utc(2026, 3, 29, 4)
    # Half an hour more runs into Mon 00:00 CEST = Sun 22:00 UTC -> 22:30 UTC.
    assert add_business_time(cal, opening, 5.5 * HOUR) == utc(2026, 3, 29, 22, 30)
    # The Saturday before, 00:00-06:00 CET = Fri 23:00 - Sat 05:00 UTC: 6 hours.
    assert business_seconds_between(cal, utc(2026, 3, 27, 23), utc(2026, 3, 28, 12)) == 6 * HOUR


def test_berlin_overnight_fall_back() -> None:
    # Open 00:00-06:00 daily. Sun 2026-10-25: 00:00 CEST = Sat 22:00 UTC; the clocks go back
    # from 03:00 CEST to 02:00 CET; 06:00 CET = 05:00 UTC. So 7 real hours instead of 6.
    cal = every_day("Europe/Berlin", "00:00", "06:00")
    opening = utc(2026, 10, 24, 22)
    assert business_seconds_between(cal, opening, utc(2026, 10, 25, 12)) == 7 * HOUR
    # 6.5h after 22:00 UTC is 04:30 UTC = 05:30 CET, still inside the long night.
    assert add_business_time(cal, opening, 6.5 * HOUR) == utc(2026, 10, 25, 4, 30)
    assert add_business_time(cal, opening, 7 * HOUR) == utc(2026, 10, 25, 5)


def test_interval_containing_the_changed_hour() -> None:
    # 01:00-05:00 Berlin. Spring: 01:00 CET = 00:00 UTC, 05:00 CEST = 03:00 UTC -> 3h.
    # Fall: 01:00 CEST = Sat 23:00 UTC, 05:00 CET = 04:00 UTC -> 5h.
    cal = every_day("Europe/Berlin", "01:00", "05:00")
    assert business_seconds_between(cal, utc(2026, 3, 29, 0), utc(2026, 3, 29, 12)) == 3 * HOUR
    assert business_seconds_between(cal, utc(2026, 10, 24, 12), utc(2026, 10, 25, 12)) == 5 * HOUR
    assert add_business_time(cal, utc(2026, 3, 29, 0), 3 * HOUR) == utc(2026, 3, 29, 3)
    assert add_business_time(cal, utc(2026, 10, 24, 23), 5 * HOUR) == utc(2026, 10, 25, 4)


def test_new_york_overnight_spring_forward() -> None:
    # Open 00:00-06:00 daily. Sun 2026-03-08: 00:00 EST = 05:00 UTC; 02:00 EST jumps to
    # 03:00 EDT; 06:00 EDT = 10:00 UTC. So 5 hours; the Saturday before has 6 (05:00-11:00 UTC).
    cal = every_day("America/New_York", "00:00", "06:00")
    assert business_seconds_between(cal, utc(2026, 3, 8, 0), utc(2026, 3, 8, 20)) == 5 * HOUR
    assert business_seconds_between(cal, utc(2026, 3, 7, 0), utc(2026, 3, 7, 20)) == 6 * HOUR
    # 4h after the 05:00 UTC opening is 09:00 UTC = 05:00 EDT.
    assert add_business_time(cal, utc(2026, 3, 8, 5), 4 * HOUR) == utc(2026, 3, 8, 9)
    # 5.5h: the night closes at 10:00 UTC after 5h; Mon 00:00 EDT = 04:00 UTC, +30 min.
    assert add_business_time(cal, utc(2026, 3, 8, 5), 5.5 * HOUR) == utc(2026, 3, 9, 4, 30)


def test_new_york_overnight_fall_back() -> None:
    # Open 00:00-06:00 daily. Sun 2026-11-01: 00:00 EDT = 04:00 UTC; 02:00 EDT goes back to
    # 01:00 EST; 06:00 EST = 11:00 UTC. So 7 hours.
    cal = every_day("America/New_York", "00:00", "06:00")
    assert business_seconds_between(cal, utc(2026, 11, 1, 0), utc(2026, 11, 1, 20)) == 7 * HOUR
    assert add_business_time(cal, utc(2026, 11, 1, 4), 7 * HOUR) == utc(2026, 11, 1, 11)
    # 09:00 UTC that morning is 04:00 EST, so 2h remain until the 06:00 EST (11:00 UTC) close.
    assert add_business_time(cal, utc(2026, 11, 1, 9), 2 * HOUR) == utc(2026, 11, 1, 11)


def test_new_york_skipped_and_repeated_wall_times() -> None:
    # A skipped wall time stands for the instant of the jump (2026-03-08 07:00 UTC):
    # 02:00-03:00 does not exist (0s); 02:30-04:00 runs 07:00-08:00 UTC (04:00 EDT) -> 1h.
    skipped = every_day("America/New_York", "02:00", "03:00")
    assert business_seconds_between(skipped, utc(2026, 3, 8), utc(2026, 3, 9)) == 0
    partly = every_day("America/New_York", "02:30", "04:00")
    assert business_seconds_between(partly, utc(2026, 3, 8), utc(2026, 3, 9)) == HOUR
    # A repeated wall time means its first occurrence: on 2026-11-01 01:00-02:00 runs from
    # 01:00 EDT (05:00 UTC) to 02:00 EST (07:00 UTC) -> both 01:xx hours, 2h.
    repeated = every_day("America/New_York", "01:00", "02:00")
    assert business_seconds_between(repeated, utc(2026, 11, 1), utc(2026, 11, 2)) == 2 * HOUR
    assert is_open(repeated, utc(2026, 11, 1, 6, 30))


def test_a_skipped_day_has_no_business_time() -> None:
    # Samoa skipped Fri 2011-12-30: the clocks went from Thu 29 24:00 (-10:00, 10:00 UTC on the
    # 30th) straight to Sat 31 00:00 (+14:00). Thursday 09:00-17:00 is 19:00-03:00 UTC (8h),
    # Friday is nothing, Saturday 09:00-17:00 is Fri 19:00 - Sat 03:00 UTC (8h).
    cal = every_day("Pacific/Apia", "09:00", "17:00")
    assert cal.day_periods(date(2011, 12, 30)) == []
    assert business_seconds_between(cal, utc(2011, 12, 29, 12), utc(2011, 12, 31, 12)) == 16 * HOUR
    # From 02:00 UTC on the 30th: 1h of Thursday is left, the second hour is Saturday's first.
    assert add_business_time(cal, utc(2011, 12, 30, 2), 2 * HOUR) == utc(2011, 12, 30, 20)


# Calendar time


def test_calendar_hours_are_plain_addition() -> None:
    start = utc(2026, 3, 29, 0, 30)
    assert add_business_time(CALENDAR_HOURS, start, 30 * HOUR) == start + timedelta(hours=30)
    assert add_business_time(always_open(), start, 1.5) == start + timedelta(seconds=1.5)
    assert add_calendar_time(start, 90) == start + timedelta(seconds=90)
    assert business_seconds_between(CALENDAR_HOURS, start, start + timedelta(days=2)) == 48 * HOUR
    # Open 24/7 in Berlin is also every real second, even across the spring-forward night.
    berlin_24_7 = every_day("Europe/Berlin", "00:00", "24:00")
    assert add_business_time(berlin_24_7, start, 5 * HOUR) == utc(2026, 3, 29, 5, 30)
    assert business_seconds_between(berlin_24_7, utc(2026, 3, 28), utc(2026, 3, 31)) == 72 * HOUR


# Pauses


def test_pause_keeps_used_time_in_calendar_time() -> None:
    # Start 10:00, target 4h, paused 11:00-13:00: 1h used before the pause, 3h from 13:00 -> 16:00.
    start = utc(2026, 1, 5, 10)
    pauses = [(utc(2026, 1, 5, 11), utc(2026, 1, 5, 13))]
    assert deadline_with_pauses(CALENDAR_HOURS, start, 4 * HOUR, pauses, False) == utc(
        2026, 1, 5, 16
    )
    assert deadline_with_pauses(CALENDAR_HOURS, start, 4 * HOUR, [], False) == utc(2026, 1, 5, 14)


def test_pause_keeps_used_time_in_business_time() -> None:
    # Berlin office, start Mon 2026-06-08 09:00 CEST, target 8h; paused from Mon 11:00 CEST to
    # Tue 10:00 CEST: 2h used, 6h from Tue 10:00 CEST -> 16:00 CEST = 14:00 UTC Tuesday.
    cal = office()
    start = utc(2026, 6, 8, 7)
    pauses = [(utc(2026, 6, 8, 9), utc(2026, 6, 9, 8))]
    assert deadline_with_pauses(cal, start, 8 * HOUR, pauses, True) == utc(2026, 6, 9, 14)
    # Unpaused the 8h are Monday 09:00-17:00 CEST -> 15:00 UTC.
    assert deadline_with_pauses(cal, start, 8 * HOUR, [], True) == utc(2026, 6, 8, 15)


def test_pauses_overlapping_unsorted_and_outside_the_clock() -> None:
    # Start 10:00, 4h target. A pause before the start does not count; pauses 12:00-13:00 and
    # 11:00-12:30 overlap into 11:00-13:00; one at 20:00 comes after the due time.
    # 1h used by 11:00, 3h from 13:00 -> 16:00.
    start = utc(2026, 1, 5, 10)
    pauses: list[tuple[datetime, datetime | None]] = [
        (utc(2026, 1, 5, 20), utc(2026, 1, 5, 21)),
        (utc(2026, 1, 5, 12), utc(2026, 1, 5, 13)),
        (utc(2026, 1, 5, 8), utc(2026, 1, 5, 9)),
        (utc(2026, 1, 5, 11), utc(2026, 1, 5, 12, 30)),
    ]
    assert deadline_with_pauses(CALENDAR_HOURS, start, 4 * HOUR, pauses, False) == utc(
        2026, 1, 5, 16
    )


def test_open_pause_means_no_deadline() -> None:
    start = utc(2026, 1, 5, 10)
    pauses: list[tuple[datetime, datetime | None]] = [
        (utc(2026, 1, 5, 11), utc(2026, 1, 5, 12)),
        (utc(2026, 1, 5, 13), None),
    ]
    assert deadline_with_pauses(CALENDAR_HOURS, start, 8 * HOUR, pauses, False) is None
    assert deadline_with_pauses(office(), start, 8 * HOUR, pauses, True) is None


def test_reversed_pause_is_refused() -> None:
    with pytest.raises(ValidationError):
        deadline_with_pauses(
            CALENDAR_HOURS,
            utc(2026, 1, 5, 10),
            HOUR,
            [(utc(2026, 1, 5, 12), utc(2026, 1, 5, 11))],
            False,
        )


# Serialisation and validation


def test_dict_round_trip() -> None:
    data = {
        "timezone": "Europe/Berlin",
        "weekly": {"mon": [["09:00", "12:00"], ["13:00", "24:00"]], "sat": [["10:00", "14:00"]]},
        "holidays": ["2026-12-26", "2026-12-25"],
    }
    cal = BusinessCalendar.from_dict(data)
    out = cal.to_dict()
    assert out["timezone"] == "Europe/Berlin"
    assert out["weekly"]["mon"] == [["09:00", "12:00"], ["13:00", "24:00"]]
    assert out["weekly"]["sun"] == []
    assert out["holidays"] == ["2026-12-25", "2026-12-26"]
    assert out["holidays_country"] is None
    assert cal.holidays == frozenset({date(2026, 12, 25), date(2026, 12, 26)})
    assert BusinessCalendar.from_dict(out) == cal
    assert hash(BusinessCalendar.from_dict(out)) == hash(cal)


@pytest.mark.parametrize(
    "data",
    [
        {"timezone": "Mars/Olympus", "weekly": {}},
        {"timezone": "", "weekly": {}},
        {"timezone": 5, "weekly": {}},
        {"weekly": {"mon": [["09:00", "17:00"]]}},
        {"timezone": "UTC", "weekly": {"monday": [["09:00", "17:00"]]}},
        {"timezone": "UTC", "weekly": {"mon": [["17:00", "09:00"]]}},
        {"timezone": "UTC", "weekly": {"mon": [["09:00", "09:00"]]}},
        {"timezone": "UTC", "weekly": {"mon": [["09:00", "12:00"], ["11:00", "17:00"]]}},
        {"timezone": "UTC", "weekly": {"mon": [["9:00", "17:00"]]}},
        {"timezone": "UTC", "weekly": {"mon": [["09:60", "17:00"]]}},
        {"timezone": "UTC", "weekly": {"mon": [["25:00", "26:00"]]}},
        {"timezone": "UTC", "weekly": {"mon": [["24:00", "24:00"]]}},
        {"timezone": "UTC", "weekly": {"mon": [["09:00", "24:01"]]}},
        {"timezone": "UTC", "weekly": {"mon": [["09:00"]]}},
        {"timezone": "UTC", "weekly": {"mon": [[900, 1700]]}},
        {"timezone": "UTC", "weekly": {"mon": "09:00-17:00"}},
        {"timezone": "UTC", "weekly": [["09:00", "17:00"]]},
        {"timezone": "UTC", "weekly": {}, "holidays": ["2026-02-30"]},
        {"timezone": "UTC", "weekly": {}, "holidays": ["25.12.2026"]},
        {"timezone": "UTC", "weekly": {}, "holidays": "2026-12-25"},
        {"timezone": "UTC", "weekly": {}, "holidays_country": "XX"},
        {"timezone": "UTC", "weekly": {}, "colour": "red"},
        "UTC",
    ],
)
def test_bad_input_is_a_validation_error(data: object) -> None:
    with pytest.raises(ValidationError):
        BusinessCalendar.from_dict(data)


def test_bad_arguments_are_validation_errors() -> None:
    cal = office("UTC")
    with pytest.raises(ValidationError):
        add_business_time(cal, datetime(2026, 1, 5, 10), HOUR)
    with pytest.raises(ValidationError):
        add_business_time(cal, utc(2026, 1, 5, 10), -1)
    with pytest.raises(ValidationError):
        add_business_time(cal, utc(2026, 1, 5, 10), float("nan"))
    with pytest.raises(ValidationError):
        BusinessCalendar(timezone="UTC", weekly={"mon": [("09:00", "17:00")]}, holidays={"x"})


def test_calendar_without_open_time_does_not_loop() -> None:
    closed = BusinessCalendar(timezone="UTC", weekly={})
    with pytest.raises(ValidationError):
        add_business_time(closed, utc(2026, 1, 5), HOUR)
    with pytest.raises(ValidationError):
        next_open(closed, utc(2026, 1, 5))
    assert business_seconds_between(closed, utc(2026, 1, 5), utc(2026, 2, 5)) == 0
    # Open on Mondays only, but every Monday of the next eleven years is a holiday.
    mondays = [date(2026, 1, 5) + timedelta(weeks=n) for n in range(11 * 53)]
    blocked = BusinessCalendar(
        timezone="UTC", weekly={"mon": [("09:00", "17:00")]}, holidays=frozenset(mondays)
    )
    with pytest.raises(ValidationError):
        add_business_time(blocked, utc(2026, 1, 1), HOUR)


# Properties over random calendars

ZONES = (
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "America/Santiago",
    "Asia/Kolkata",
)


@st.composite
def calendars(draw: st.DrawFn) -> BusinessCalendar:
    weekly: dict[str, list[tuple[str, str]]] = {}
    for day in DAYS:
        # Distinct quarter-hour marks, paired in order, make disjoint intervals; 96 is 24:00
        # and, being the largest mark, can only ever close an interval.
        marks = sorted(draw(st.lists(st.integers(0, 96), unique=True, max_size=6)))
        if len(marks) % 2:
            marks.pop()
        weekly[day] = [
            (f"{a * 15 // 60:02d}:{a * 15 % 60:02d}", f"{b * 15 // 60:02d}:{b * 15 % 60:02d}")
            for a, b in zip(marks[::2], marks[1::2], strict=True)
        ]
    if not any(weekly.values()):
        weekly[draw(st.sampled_from(DAYS))] = [("09:00", "17:00")]
    holidays = draw(st.frozensets(st.dates(date(2026, 1, 1), date(2027, 12, 31)), max_size=20))
    return BusinessCalendar(timezone=draw(st.sampled_from(ZONES)), weekly=weekly, holidays=holidays)


instants = st.datetimes(datetime(2025, 12, 1), datetime(2027, 12, 31), timezones=st.just(UTC))
durations = st.floats(min_value=0, max_value=14 * 86400, exclude_min=True, allow_nan=False)
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(cal=calendars(), start=instants, seconds=durations)
@pytest.mark.slow
def test_round_trip(cal: BusinessCalendar, start: datetime, seconds: float) -> None:
    due = add_business_time(cal, start, seconds)
    assert due >= start
    assert due.utcoffset() == timedelta(0)
    assert abs(business_seconds_between(cal, start, due) - seconds) <= 1e-6


@PROPERTY
@given(cal=calendars(), a=instants, b=instants, c=instants)
@pytest.mark.slow
def test_between_is_additive(cal: BusinessCalendar, a: datetime, b: datetime, c: datetime) -> None:
    a, b, c = sorted((a, b, c))
    whole = business_seconds_between(cal, a, c)
    parts = business_seconds_between(cal, a, b) + business_seconds_between(cal, b, c)
    assert abs(whole - parts) <= 1e-6
    assert whole <= (c - a).total_seconds()


@PROPERTY
@given(cal=calendars(), at=instants)
def test_next_open_is_open(cal: BusinessCalendar, at: datetime) -> None:
    opening = next_open(cal, at)
    assert opening >= at
    assert is_open(cal, opening)
    assert business_seconds_between(cal, at, opening) == 0
    assert (opening == at) == is_open(cal, at)
