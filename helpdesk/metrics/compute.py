"""What a ticket's history measures, as pure code (no database, no Flask).

Durations are raw elapsed times between two instants, in calendar seconds and in business seconds
of the brand's calendar: a pending pause does not shorten them. Pauses count only for SLA
compliance, through the due times the SLA service stores on the ticket (a target breached is a
target missed).

- First response: ticket opened -> the ticket's "first_response" event (a person's reply from the
  console, the API or the Instagram app, strictly after the opening; automated messages never
  record one). Reopening keeps it.
- Response: every inbound message that starts a wait (the ticket was not already waiting) ->
  the next "response" event; a resolution ends a wait unanswered. The first wait counts too.
- Resolution: ticket opened -> the last move from an active status to resolved or closed; a
  reopened ticket that is resolved again replaces the earlier resolution.

Percentiles are linear interpolations between order statistics (numpy's default), exactly from
the values or, from a rollup histogram, by spreading each bucket's values geometrically inside it.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from helpdesk.sla.calendar import DAYS, BusinessCalendar

ACTIVE = frozenset({"open", "pending", "snoozed"})
DONE = frozenset({"resolved", "closed"})
FIRST_RESPONSE = "first_response"
RESPONSE = "response"
RESOLUTION = "resolution"
KINDS = (FIRST_RESPONSE, RESPONSE, RESOLUTION)
# The ticket events a computation reads; the others (notes, tags ...) do not move a duration.
EVENT_KINDS = (
    "first_response",
    "response",
    "status_changed",
    "reopened",
    "assigned",
    "unassigned",
    "sla_breached",
)
# The fields of their data that matter, read by the database rather than parsed here.
EVENT_FIELDS = ("message_id", "from", "to", "assignee_id", "target")

# Histogram buckets: [0, 1) s, then [R^(i-1), R^i). A value and its estimate share a bucket, so
# an estimated percentile is within R - 1 = 5 % of the exact one.
BUCKET_RATIO = 1.05
_LOG_RATIO = math.log(BUCKET_RATIO)
MAX_BUCKET = 450  # 1.05^449 s is thousands of years: nothing real lands beyond it
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NO_LIMIT = 1 << 62  # an event id after every event
_MICRO = timedelta(microseconds=1)
_ONE_DAY = timedelta(days=1)


# Durations ----------------------------------------------------------------------------------------


def _micros(at: datetime) -> int:
    return (at - _EPOCH) // _MICRO


class BusinessClock:
    """``business_seconds_between`` with each local date's open periods computed once, because a
    recompute measures hundreds of thousands of durations against the same calendar."""

    def __init__(self, calendar: BusinessCalendar) -> None:
        self.calendar = calendar
        self.zone: ZoneInfo = calendar.zone
        self.always_open = (
            not calendar.holidays
            and calendar.holidays_country is None
            and all(list(calendar.weekly[day]) == [("00:00", "24:00")] for day in DAYS)
        )
        self._periods: dict[date, list[tuple[int, int]]] = {}
        self._dates: dict[datetime, date] = {}

    def _day(self, day: date) -> list[tuple[int, int]]:
        periods = self._periods.get(day)
        if periods is None:
            periods = [(_micros(a), _micros(b)) for a, b in self.calendar.day_periods(day)]
            self._periods[day] = periods
        return periods

    def local_date(self, at: datetime) -> date:
        """The brand-local date of an instant: the day a metric is reported on."""
        day = self._dates.get(at)
        if day is None:
            day = self._dates[at] = at.astimezone(self.zone).date()
        return day

    def business_seconds(self, start: datetime, end: datetime) -> float:
        """Open seconds in [start, end); the same walk and sums as ``business_seconds_between``."""
        if end <= start:
            return 0.0
        if self.always_open:
            return (end - start).total_seconds()
        low, high = _micros(start), _micros(end)
        day = start.astimezone(self.zone).date() - _ONE_DAY
        last = end.astimezone(self.zone).date() + _ONE_DAY
        total = 0
        while day <= last:
            for opens, closes in self._day(day):
                begin, finish = max(opens, low), min(closes, high)
                if finish > begin:
                    total += finish - begin
            day += _ONE_DAY
        return total / 1_000_000


def calendar_seconds(start: datetime, end: datetime) -> float:
    return max((end - start).total_seconds(), 0.0)


def bucket_of(seconds: float) -> int:
    """The histogram bucket of a duration."""
    if seconds < 1:
        return 0
    return min(1 + int(math.floor(math.log(seconds) / _LOG_RATIO)), MAX_BUCKET)


def bucket_bounds(index: int) -> tuple[float, float]:
    if index <= 0:
        return 0.0, 1.0
    return BUCKET_RATIO ** (index - 1), BUCKET_RATIO**index


def dense_histogram(counts: Mapping[int, int]) -> list[int]:
    """``{bucket: count}`` as ``[first bucket, count, count of the next bucket, ...]``."""
    if not counts:
        return []
    low, high = min(counts), max(counts)
    return [low, *(counts.get(index, 0) for index in range(low, high + 1))]


def empty_histogram() -> list[int]:
    return [0] * (MAX_BUCKET + 1)


def add_histogram(total: list[int], dense: Sequence[int]) -> None:
    """Add a dense histogram into a full one (``empty_histogram``), in place."""
    if not dense:
        return
    low, counts = dense[0], dense[1:]
    high = low + len(counts)
    total[low:high] = map(operator.add, total[low:high], counts)


# One ticket -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TicketFacts:
    """The ticket row as the computation needs it (now, not as it was)."""

    id: int
    brand_id: int
    channel_id: int
    team_id: int | None
    assignee_id: int | None
    status: str
    opened_at: datetime
    resolved_at: datetime | None
    breached: tuple[str, ...]
    tag_ids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class EventFacts:
    """A ticket event with the fields of its data that matter (EVENT_FIELDS)."""

    id: int
    kind: str
    at: datetime
    actor_id: int | None
    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Targets:
    """Which SLA targets the ticket's policy sets: only those count for compliance."""

    first_response: bool = False
    resolution: bool = False


@dataclass(frozen=True, slots=True)
class Measured:
    """One metric event before it is dated and stored; ``ended_at`` None marks a breach of a
    target that has not concluded yet (counted for compliance only, on the day of the breach)."""

    kind: str
    seq: int
    started_at: datetime
    ended_at: datetime | None
    agent_id: int | None
    from_app: bool = False
    sla_met: bool | None = None
    breached_at: datetime | None = None

    @property
    def happened_at(self) -> datetime:
        """The reply, the resolution, or the breach of a target still open: the day it counts."""
        return self.ended_at or self.breached_at or self.started_at


def _assignee_before(
    ticket: TicketFacts, events: Sequence[EventFacts], limit_id: int
) -> int | None:
    """Who was assigned just before the event ``limit_id`` (events replayed in id order); a
    ticket with no assignment event at all was never reassigned: its assignee now."""
    changes = [e for e in events if e.kind in ("assigned", "unassigned")]
    if not changes:
        return ticket.assignee_id
    assignee = None
    for event in changes:
        if event.id >= limit_id:
            break
        assignee = event.data.get("assignee_id") if event.kind == "assigned" else None
    return assignee


def _last_breach(events: Sequence[EventFacts], target: str) -> EventFacts | None:
    found = None
    for event in events:
        if event.kind == "sla_breached" and event.data.get("target") == target:
            found = event
    return found


def _message_id(event: EventFacts) -> int | None:
    value = event.data.get("message_id")
    return value if isinstance(value, int) else None


def measure_ticket(
    ticket: TicketFacts,
    inbound: Iterable[datetime],
    events: Iterable[EventFacts],
    echo_ids: set[int] | frozenset[int],
    targets: Targets,
) -> list[Measured]:
    """The first response, responses and resolution of one ticket (see the module docstring).

    ``inbound``: sent times of the ticket's customer messages; ``events``: its ticket events of
    EVENT_KINDS; ``echo_ids``: its outbound messages sent from the Instagram app.
    """
    history = sorted(events, key=lambda e: e.id)
    resolutions = _resolutions(history)
    rows = [
        _first_response(ticket, history, echo_ids, targets),
        *_responses(inbound, history, resolutions, echo_ids),
        _resolution(ticket, history, resolutions, targets),
    ]
    return [row for row in rows if row is not None]


def _first_response(
    ticket: TicketFacts,
    history: list[EventFacts],
    echo_ids: set[int] | frozenset[int],
    targets: Targets,
) -> Measured | None:
    """Measured when the ticket had one; else, with a target, only once it breached."""
    # A reply at or before the opening answers nothing of this ticket (an echo delivered late, a
    # thread the brand started): events recorded so before the rule are passed over.
    first = next(
        (e for e in history if e.kind == "first_response" and e.at > ticket.opened_at), None
    )
    if first is None:
        return _unmet(ticket, history, FIRST_RESPONSE) if targets.first_response else None
    from_app = _message_id(first) in echo_ids
    return Measured(
        FIRST_RESPONSE,
        0,
        ticket.opened_at,
        first.at,
        None if from_app else first.actor_id,
        from_app,
        (FIRST_RESPONSE not in ticket.breached) if targets.first_response else None,
    )


def _resolutions(history: list[EventFacts]) -> list[EventFacts]:
    """Status changes from an active status to a done one."""
    return [
        e
        for e in history
        if e.kind == "status_changed" and e.data.get("to") in DONE and e.data.get("from") in ACTIVE
    ]


def _responses(
    inbound: Iterable[datetime],
    history: list[EventFacts],
    resolutions: list[EventFacts],
    echo_ids: set[int] | frozenset[int],
) -> list[Measured]:
    """Waits, in time order: a customer message starts one unless the ticket is already waiting,
    a reply ends it with a response, a resolution ends it without one."""
    timeline: list[tuple[datetime, int, int, EventFacts | None]] = [
        (at, 0, 0, None) for at in inbound
    ]
    timeline += [(e.at, 1, e.id, e) for e in history if e.kind == "response"]
    timeline += [(e.at, 2, e.id, None) for e in resolutions]
    timeline.sort(key=lambda item: item[:3])
    rows: list[Measured] = []
    waiting: datetime | None = None
    for at, order, _id, event in timeline:
        if order == 0:
            waiting = waiting or at
        elif order == 1 and waiting is not None:
            from_app = _message_id(event) in echo_ids
            actor = None if from_app else event.actor_id
            rows.append(Measured(RESPONSE, len(rows), waiting, at, actor, from_app))
            waiting = None
        elif order == 2:
            waiting = None
    return rows


def _resolution(
    ticket: TicketFacts,
    history: list[EventFacts],
    resolutions: list[EventFacts],
    targets: Targets,
) -> Measured | None:
    """The last resolution not undone by a reopening, for a ticket done now; else, with a
    target, only once it breached."""
    if ticket.status not in DONE:
        return _unmet(ticket, history, RESOLUTION) if targets.resolution else None
    last = _last_resolution(history, resolutions)
    ended = last.at if last is not None else ticket.resolved_at
    if ended is None:
        return None
    agent = _assignee_before(ticket, history, last.id) if last is not None else ticket.assignee_id
    met = (RESOLUTION not in ticket.breached) if targets.resolution else None
    return Measured(RESOLUTION, 0, ticket.opened_at, ended, agent, False, met)


def _last_resolution(history: list[EventFacts], resolutions: list[EventFacts]) -> EventFacts | None:
    resolution_ids = {e.id for e in resolutions}
    last: EventFacts | None = None
    for event in history:
        if event.kind == "reopened":
            last = None
        elif event.id in resolution_ids:
            last = event
    return last


def _unmet(ticket: TicketFacts, history: list[EventFacts], metric: str) -> Measured | None:
    """A target missed with nothing measured yet: a row at its breach, charged to the assignee
    of that moment; none while it has not breached."""
    if metric not in ticket.breached:
        return None
    breach = _last_breach(history, metric)
    return Measured(
        metric,
        0,
        ticket.opened_at,
        None,
        _assignee_before(ticket, history, breach.id if breach else _NO_LIMIT),
        sla_met=False,
        breached_at=breach.at if breach else None,
    )


# Dimensions -------------------------------------------------------------------------------------


def dimension_keys(
    agent_id: int | None,
    from_app: bool,
    team_id: int | None,
    channel_id: int,
    tag_ids: Sequence[int],
) -> list[tuple[str, str]]:
    """The (dimension, key) pairs a metric event is counted under: the brand as a whole, its
    agent ("app" for a reply from the Instagram app, "none" without one), team, channel, and
    each of its tags ("none" for an untagged ticket)."""
    if from_app:
        agent = "app"
    else:
        agent = str(agent_id) if agent_id is not None else "none"
    keys = [
        ("all", ""),
        ("agent", agent),
        ("team", str(team_id) if team_id is not None else "none"),
        ("channel", str(channel_id)),
    ]
    keys += [("tag", str(tag_id)) for tag_id in tag_ids] or [("tag", "none")]
    return keys


# Statistics -------------------------------------------------------------------------------------


def empty_stats() -> dict[str, Any]:
    return {"median_s": None, "p90_s": None, "mean_s": None, "count": 0}


def _round(value: float) -> float:
    return round(value, 1)


def exact_quantile(ordered: Sequence[float], q: float) -> float:
    """Linear interpolation between the order statistics around rank q * (n - 1)."""
    rank = q * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (rank - low) * (ordered[high] - ordered[low])


def exact_stats(values: Iterable[float]) -> dict[str, Any]:
    ordered = sorted(values)
    if not ordered:
        return empty_stats()
    return {
        "median_s": _round(exact_quantile(ordered, 0.5)),
        "p90_s": _round(exact_quantile(ordered, 0.9)),
        "mean_s": _round(math.fsum(ordered) / len(ordered)),
        "count": len(ordered),
    }


def _order_statistic(buckets: Sequence[tuple[int, int]], k: int) -> float:
    """The estimated k-th smallest value (0-based): the bucket's values spread evenly in log
    space (linearly in the first bucket)."""
    seen = 0
    for index, count in buckets:
        if k < seen + count:
            position = (k - seen + 0.5) / count
            low, high = bucket_bounds(index)
            if index == 0:
                return low + (high - low) * position
            return low * (high / low) ** position
        seen += count
    low, high = bucket_bounds(buckets[-1][0])
    return high


def histogram_quantile(histogram: Mapping[int, int] | Sequence[int], q: float) -> float | None:
    """A quantile from ``{bucket: count}`` or a full list of counts indexed by bucket."""
    if isinstance(histogram, Mapping):
        buckets = sorted((index, count) for index, count in histogram.items() if count > 0)
    else:
        buckets = [(index, count) for index, count in enumerate(histogram) if count]
    total = sum(count for _index, count in buckets)
    if not total:
        return None
    rank = q * (total - 1)
    low = math.floor(rank)
    value = _order_statistic(buckets, low)
    if rank > low:
        value += (rank - low) * (_order_statistic(buckets, low + 1) - value)
    return value


def histogram_stats(
    count: int, total: float, histogram: Mapping[int, int] | Sequence[int]
) -> dict[str, Any]:
    if not count:
        return empty_stats()
    return {
        "median_s": _round(histogram_quantile(histogram, 0.5)),
        "p90_s": _round(histogram_quantile(histogram, 0.9)),
        "mean_s": _round(total / count),
        "count": count,
    }
