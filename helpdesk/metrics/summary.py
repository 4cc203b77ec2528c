"""What dashboards and the API read (docs/metrics.md; `GET /api/v1/metrics/summary` in
docs/rest-api.md).

Figures over a range of brand-local dates come from the daily rollups, so a 90-day summary reads
a few hundred rows whatever the number of messages; the backlog is three counts over active
tickets. When a range holds few durations of a kind (at most ``EXACT_LIMIT``), their percentiles
are computed exactly from the metric events instead, which costs no more than the rollups then.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from sqlalchemy import func, select

from helpdesk.accounts.models import Agent, Team
from helpdesk.brands.models import Brand
from helpdesk.channels.models import Channel
from helpdesk.csat import figures as csat_figures
from helpdesk.errors import ValidationError
from helpdesk.extensions import db
from helpdesk.metrics.compute import (
    KINDS,
    add_histogram,
    dimension_keys,
    empty_histogram,
    empty_stats,
    exact_stats,
    histogram_stats,
)
from helpdesk.metrics.models import MetricEvent, MetricRollup, MetricVolume
from helpdesk.tickets.models import ACTIVE_STATUSES, Tag, Ticket

EXACT_LIMIT = 2000
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2999, 12, 31)  # what a range may ask for
SAMPLE_MIN = 20  # fewer durations than this: the figure is shown with a small-sample warning
GROUP_BY = ("agent", "team", "tag", "channel", "day")
SLA_KINDS = {"first_response": "first_response_met_pct", "resolution": "resolution_met_pct"}
NO_KEY_LABELS = {
    "agent": "No agent",
    "team": "No team",
    "tag": "No tag",
    "channel": "No channel",
}
APP_LABEL = "Instagram app"


@dataclass
class _Totals:
    """One metric kind summed over rollup rows, in the variant (calendar or business) asked."""

    count: int = 0
    total: float = 0.0
    histogram: list[int] = field(default_factory=empty_histogram)
    sla_total: int = 0
    sla_met: int = 0

    def add(self, row: Any) -> None:
        self.count += row.count
        self.total += row.total
        add_histogram(self.histogram, row.histogram)
        self.sla_total += row.sla_total
        self.sla_met += row.sla_met

    def stats(self) -> dict[str, Any]:
        return histogram_stats(self.count, self.total, self.histogram)


def _met_pct(totals: _Totals) -> float | None:
    if not totals.sla_total:
        return None
    return round(100.0 * totals.sla_met / totals.sla_total, 1)


def check_range(start: date, end: date) -> None:
    """Refuse dates no brand's history can hold: near the ends of the calendar the previous
    period and the daily trend would step outside the dates Python can represent."""
    if not (FIRST_DAY <= start <= LAST_DAY and FIRST_DAY <= end <= LAST_DAY):
        raise ValidationError(
            f"dates run from {FIRST_DAY.day} {FIRST_DAY:%B %Y} to {LAST_DAY.day} {LAST_DAY:%B %Y}"
        )


def previous_period(start: date, end: date) -> tuple[date, date]:
    """The range of the same length just before ``start``..``end``, for "vs previous period"."""
    length = (end - start).days + 1
    return start - timedelta(days=length), start - timedelta(days=1)


def backlog(brand_id: int) -> dict[str, int]:
    """Now, not over a range: active tickets, those without an assignee, those breached; one
    pass over the brand's active tickets through ix_tickets_brand_status_assignee."""
    row = db.session.execute(
        select(
            func.count(),
            func.count().filter(Ticket.assignee_id.is_(None)),
            func.count().filter(func.json_array_length(Ticket.breached) > 0),
        ).where(Ticket.brand_id == brand_id, Ticket.status.in_(ACTIVE_STATUSES))
    ).one()
    return {"open": row[0], "unassigned": row[1], "breached": row[2]}


def _rollups(
    brand_id: int,
    start: date,
    end: date,
    dimensions: Iterable[str],
    business_hours: bool,
    kinds: Iterable[str] = KINDS,
):
    """The rollup rows of the range with only the variant asked, so half the JSON is read."""
    if business_hours:
        total, histogram = MetricRollup.business_sum, MetricRollup.business_hist
    else:
        total, histogram = MetricRollup.calendar_sum, MetricRollup.calendar_hist
    return db.session.execute(
        select(
            MetricRollup.dimension,
            MetricRollup.day,
            MetricRollup.key,
            MetricRollup.kind,
            MetricRollup.count,
            total.label("total"),
            histogram.label("histogram"),
            MetricRollup.sla_total,
            MetricRollup.sla_met,
        ).where(
            MetricRollup.brand_id == brand_id,
            MetricRollup.dimension.in_(list(dimensions)),
            MetricRollup.day >= start,
            MetricRollup.day <= end,
            MetricRollup.kind.in_(list(kinds)),
        )
    )


def _exact_values(
    brand_id: int, start: date, end: date, kind: str, business_hours: bool, group_by: str | None
) -> tuple[list[float], dict[str, list[float]]]:
    """The durations of one kind in the range, overall and per group key."""
    seconds = MetricEvent.business_seconds if business_hours else MetricEvent.calendar_seconds
    rows = db.session.execute(
        select(
            seconds,
            MetricEvent.agent_id,
            MetricEvent.from_app,
            MetricEvent.team_id,
            MetricEvent.channel_id,
            MetricEvent.tag_ids,
            MetricEvent.day,
        ).where(
            MetricEvent.brand_id == brand_id,
            MetricEvent.day >= start,
            MetricEvent.day <= end,
            MetricEvent.kind == kind,
            seconds.is_not(None),
        )
    )
    values: list[float] = []
    groups: dict[str, list[float]] = defaultdict(list)
    for value, agent_id, from_app, team_id, channel_id, tag_ids, day in rows:
        values.append(value)
        if group_by == "day":
            groups[day.isoformat()].append(value)
        elif group_by is not None:
            for dimension, key in dimension_keys(
                agent_id, from_app, team_id, channel_id, tag_ids or []
            ):
                if dimension == group_by:
                    groups[key].append(value)
    return values, groups


def _volume(brand_id: int, start: date, end: date, by=None) -> dict[Any, dict[str, int]]:
    columns = [by] if by is not None else []
    rows = db.session.execute(
        select(
            *columns,
            func.coalesce(func.sum(MetricVolume.tickets_opened), 0),
            func.coalesce(func.sum(MetricVolume.messages_in), 0),
            func.coalesce(func.sum(MetricVolume.messages_out), 0),
        )
        .where(
            MetricVolume.brand_id == brand_id,
            MetricVolume.day >= start,
            MetricVolume.day <= end,
        )
        .group_by(*columns)
    )
    found: dict[Any, dict[str, int]] = {}
    for row in rows:
        key = row[0] if by is not None else None
        opened, inbound, outbound = row[-3:]
        found[key] = {
            "tickets_opened": int(opened),
            "messages_in": int(inbound),
            "messages_out": int(outbound),
        }
    return found


def _empty_volume() -> dict[str, int]:
    return {"tickets_opened": 0, "messages_in": 0, "messages_out": 0}


def _labels(brand_id: int, group_by: str, keys: Iterable[str]) -> dict[str, tuple[Any, str]]:
    """Each group key as the API shows it: (key, label)."""
    keys = list(keys)
    if group_by == "day":
        return {key: (key, key) for key in keys}
    ids = [int(key) for key in keys if key.isdigit()]
    id_column, column = {
        "agent": (Agent.id, Agent.name),
        "team": (Team.id, Team.name),
        "tag": (Tag.id, Tag.name),
        "channel": (Channel.id, func.coalesce(func.nullif(Channel.name, ""), Channel.account_id)),
    }[group_by]
    names: dict[int, str] = dict(
        db.session.execute(select(id_column, column).where(id_column.in_(ids))).all()
    )
    labels: dict[str, tuple[Any, str]] = {}
    for key in keys:
        if key == "app":
            labels[key] = ("app", APP_LABEL)
        elif key.isdigit():
            labels[key] = (int(key), names.get(int(key)) or f"#{key}")
        else:
            labels[key] = (None, NO_KEY_LABELS[group_by])
    return labels


def summary(
    brand: Brand,
    start: date,
    end: date,
    business_hours: bool = False,
    group_by: str | None = None,
    *,
    exact_limit: int = EXACT_LIMIT,
) -> dict[str, Any]:
    """The headline figures of brand-local dates ``start``..``end`` (inclusive), optionally
    broken down by agent, team, tag, channel or day; an empty range gives zeros and None.

    Durations are raw elapsed times (a pending pause does not shorten them), in calendar or
    business seconds; SLA compliance is where pauses count, through the tickets' due times."""
    if group_by is not None and group_by not in GROUP_BY:
        raise ValidationError(f"group_by must be one of {', '.join(GROUP_BY)}.")
    overall, grouped = _totals(brand.id, start, end, business_hours, group_by)
    headline, group_stats = _stats(
        brand.id, start, end, business_hours, group_by, overall, grouped, exact_limit
    )
    groups: list[dict[str, Any]] = []
    csat, csat_by = csat_figures.csat(brand, start, end, group_by)
    if group_by is not None:
        volume_by = _volume_by(brand.id, start, end, group_by)
        groups = _groups(brand.id, group_by, grouped, group_stats, volume_by, csat_by)
    return {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "business_hours": business_hours,
        **headline,
        "sla": {name: _met_pct(overall[kind]) for kind, name in SLA_KINDS.items()},
        "volume": _volume(brand.id, start, end).get(None, _empty_volume()),
        "backlog": backlog(brand.id),
        "csat": csat,
        "groups": groups,
        "sample_warning": any(headline[kind]["count"] < SAMPLE_MIN for kind in KINDS),
    }


def _totals(
    brand_id: int, start: date, end: date, business_hours: bool, group_by: str | None
) -> tuple[dict[str, _Totals], dict[str, dict[str, _Totals]]]:
    """The rollups of the range added up per kind: overall, and per group key."""
    dimension = group_by if group_by not in (None, "day") else None
    overall: dict[str, _Totals] = {kind: _Totals() for kind in KINDS}
    grouped: dict[str, dict[str, _Totals]] = defaultdict(lambda: {k: _Totals() for k in KINDS})
    dimensions = ["all"] + ([dimension] if dimension else [])
    for row in _rollups(brand_id, start, end, dimensions, business_hours):
        if row.dimension == "all":
            overall[row.kind].add(row)
            if group_by == "day":
                grouped[row.day.isoformat()][row.kind].add(row)
        else:
            grouped[row.key][row.kind].add(row)
    return overall, grouped


def _stats(
    brand_id: int,
    start: date,
    end: date,
    business_hours: bool,
    group_by: str | None,
    overall: dict[str, _Totals],
    grouped: dict[str, dict[str, _Totals]],
    exact_limit: int,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Figures per kind, overall and per group: exact from the metric events while they are
    few, else estimated from the rollups' histograms."""
    headline: dict[str, Any] = {}
    group_stats: dict[str, dict[str, Any]] = defaultdict(dict)
    for kind in KINDS:
        totals = overall[kind]
        if 0 < totals.count <= exact_limit:
            values, by_key = _exact_values(brand_id, start, end, kind, business_hours, group_by)
            headline[kind] = exact_stats(values)
            for key in grouped:
                group_stats[key][kind] = exact_stats(by_key.get(key, ()))
        else:
            headline[kind] = totals.stats()
            for key, kinds in grouped.items():
                group_stats[key][kind] = kinds[kind].stats()
    return headline, group_stats


def _volume_by(brand_id: int, start: date, end: date, group_by: str) -> dict[Any, dict[str, int]]:
    """The volume per group key, for the groupings that have one (day and channel)."""
    if group_by == "day":
        return {
            day.isoformat(): value
            for day, value in _volume(brand_id, start, end, MetricVolume.day).items()
        }
    if group_by == "channel":
        return {
            str(channel): value
            for channel, value in _volume(brand_id, start, end, MetricVolume.channel_id).items()
        }
    return {}


def _groups(
    brand_id: int,
    group_by: str,
    grouped: dict[str, dict[str, _Totals]],
    group_stats: dict[str, dict[str, Any]],
    volume_by: dict[Any, dict[str, int]],
    csat_by: dict[str, dict[str, Any]],
) -> list[dict[str, Any]]:
    """One entry per group key, labelled and in the order the dashboards show them."""
    groups: list[dict[str, Any]] = []
    keys = set(grouped) | set(volume_by) | set(csat_by)
    labels = _labels(brand_id, group_by, keys)
    for key in keys:
        stats = {kind: group_stats[key].get(kind, empty_stats()) for kind in KINDS}
        kinds = grouped[key]
        group = {
            "key": labels[key][0],
            "label": labels[key][1],
            **stats,
            "sla": {name: _met_pct(kinds[kind]) for kind, name in SLA_KINDS.items()},
            "sample_warning": any(s["count"] < SAMPLE_MIN for s in stats.values()),
        }
        if group_by in ("day", "channel"):
            group["volume"] = volume_by.get(key, _empty_volume())
        if group_by in csat_figures.GROUPS:
            group["csat"] = csat_by.get(key, csat_figures.empty())
        groups.append(group)
    if group_by == "day":
        groups.sort(key=lambda g: g["key"])
    else:
        groups.sort(key=lambda g: (g["key"] is None, g["key"] == "app", g["label"].lower()))
    return groups


def daily_trend(
    brand: Brand, start: date, end: date, business_hours: bool = False
) -> list[dict[str, Any]]:
    """Every date of the range with its first-response median and count, and its volume."""
    per_day: dict[date, _Totals] = defaultdict(_Totals)
    for row in _rollups(brand.id, start, end, ["all"], business_hours, ["first_response"]):
        per_day[row.day].add(row)
    total = sum(t.count for t in per_day.values())
    exact: dict[str, list[float]] = {}
    if 0 < total <= EXACT_LIMIT:
        _values, exact = _exact_values(
            brand.id, start, end, "first_response", business_hours, "day"
        )
    volume = _volume(brand.id, start, end, MetricVolume.day)
    days = []
    day = start
    while day <= end:
        if exact:
            stats = exact_stats(exact.get(day.isoformat(), ()))
        else:
            stats = per_day[day].stats() if day in per_day else empty_stats()
        days.append(
            {
                "day": day.isoformat(),
                "first_response": {"median_s": stats["median_s"], "count": stats["count"]},
                **volume.get(day, _empty_volume()),
            }
        )
        day += timedelta(days=1)
    return days


def heatmap(brand: Brand, start: date, end: date) -> list[list[int]]:
    """Inbound messages by brand-local weekday (Monday first) and hour: 7 rows of 24 counts."""
    cells = [[0] * 24 for _ in range(7)]
    rows = db.session.execute(
        select(MetricVolume.day, MetricVolume.hour, func.sum(MetricVolume.messages_in))
        .where(
            MetricVolume.brand_id == brand.id,
            MetricVolume.day >= start,
            MetricVolume.day <= end,
        )
        .group_by(MetricVolume.day, MetricVolume.hour)
    )
    for day, hour, count in rows:
        cells[day.weekday()][hour] += int(count or 0)
    return cells
