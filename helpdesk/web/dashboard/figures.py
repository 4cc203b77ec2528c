"""What the dashboard shows, shaped from `summary()` so that page, CSV and JSON agree."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from helpdesk.metrics.summary import SAMPLE_MIN, previous_period, summary
from helpdesk.web.console.formatting import duration

NO_DATA = "no data"
TABLES = ("agent", "team", "tag", "channel", "day")
TABLE_TITLES = {
    "agent": "By agent",
    "team": "By team",
    "tag": "By tag",
    "channel": "By channel",
    "day": "By day",
}


def human(seconds: float | None) -> str:
    """Durations as a person reads them (the console's format), never raw seconds."""
    return NO_DATA if seconds is None else duration(round(seconds))


def percent(value: float | None) -> str:
    return NO_DATA if value is None else f"{value:.1f} %"


def score(value: float | None) -> str:
    """A CSAT average, out of 5."""
    return NO_DATA if value is None else f"{value:.2f} / 5"


@dataclass(frozen=True)
class Figure:
    """One headline number with its previous-period comparison."""

    key: str
    label: str
    value: Any
    text: str
    delta: str
    trend: str  # "better", "worse" or "" (no comparison, or no change)
    small_sample: bool = False


def _delta(now: Any, before: Any, kind: str, lower_is_better: bool) -> tuple[str, str]:
    if now is None or before is None:
        return "no comparison", ""
    change = now - before
    if abs(change) < 1e-9:
        return "no change", ""
    sign = "+" if change > 0 else "−"
    if kind == "duration":
        text = f"{sign}{human(change)}"
    elif kind == "percent":
        text = f"{sign}{abs(change):.1f} pts"
    elif kind == "score":
        text = f"{sign}{abs(change):.2f}"
    else:
        text = f"{sign}{abs(change)}"
    better = (change < 0) == lower_is_better
    return f"{text} vs previous period", "better" if better else "worse"


DURATIONS = (
    ("first_response_median", "First response · median", "first_response", "median_s"),
    ("first_response_p90", "First response · p90", "first_response", "p90_s"),
    ("response_median", "Response · median", "response", "median_s"),
    ("resolution_median", "Resolution · median", "resolution", "median_s"),
)
SLAS = (
    ("first_response_met_pct", "SLA met · first response"),
    ("resolution_met_pct", "SLA met · resolution"),
)
VOLUMES = (
    ("tickets_opened", "Tickets opened"),
    ("messages_in", "Messages in"),
    ("messages_out", "Messages out"),
)


def headline(current: dict[str, Any], previous: dict[str, Any]) -> list[Figure]:
    """The range's figures, each against the previous period of the same length."""
    figures = []
    for key, label, kind, stat in DURATIONS:
        now, before = current[kind][stat], previous[kind][stat]
        delta, trend = _delta(now, before, "duration", lower_is_better=True)
        small = 0 < current[kind]["count"] < SAMPLE_MIN
        figures.append(Figure(key, label, now, human(now), delta, trend, small))
    for key, label in SLAS:
        now, before = current["sla"][key], previous["sla"][key]
        delta, trend = _delta(now, before, "percent", lower_is_better=False)
        figures.append(Figure(key, label, now, percent(now), delta, trend))
    for key, label in VOLUMES:
        now, before = current["volume"][key], previous["volume"][key]
        delta, _trend = _delta(now, before, "count", lower_is_better=True)
        figures.append(Figure(key, label, now, str(now), delta, ""))  # volume: not good or bad
    return figures + csat_headline(current["csat"], previous["csat"])


def csat_headline(current: dict[str, Any], previous: dict[str, Any]) -> list[Figure]:
    """The CSAT card: the average score, the share satisfied (4 or 5), answers of surveys."""
    average, before = current["average"], previous["average"]
    delta, trend = _delta(average, before, "score", lower_is_better=False)
    small = 0 < current["responses"] < SAMPLE_MIN
    figures = [
        Figure("csat_average", "CSAT · average", average, score(average), delta, trend, small)
    ]
    now, before = current["satisfied_pct"], previous["satisfied_pct"]
    delta, trend = _delta(now, before, "percent", lower_is_better=False)
    figures.append(
        Figure("csat_satisfied_pct", "CSAT · satisfied", now, percent(now), delta, trend)
    )
    answered = f"{current['responses']} of {current['sent']}"
    delta, _trend = _delta(current["responses"], previous["responses"], "count", True)
    figures.append(
        Figure(
            "csat_responses", "CSAT · answers of surveys", current["responses"], answered, delta, ""
        )
    )
    return figures


def period_figures(brand, period) -> tuple[dict[str, Any], list[Figure]]:
    """The summary of the period and its headline figures against the period before it."""
    current = summary(brand, period.start, period.end, period.business_hours)
    before_start, before_end = previous_period(period.start, period.end)
    previous = summary(brand, before_start, before_end, period.business_hours)
    return current, headline(current, previous)


# Tables ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    kind: str  # "text", "duration", "percent" or "count"


COLUMNS = (
    Column("label", "Name", "text"),
    Column("first_response_median", "First response median", "duration"),
    Column("first_response_p90", "First response p90", "duration"),
    Column("first_responses", "First responses", "count"),
    Column("response_median", "Response median", "duration"),
    Column("resolution_median", "Resolution median", "duration"),
    Column("resolutions", "Resolutions", "count"),
    Column("first_response_met_pct", "SLA met first response", "percent"),
    Column("resolution_met_pct", "SLA met resolution", "percent"),
)
CSAT_COLUMNS = (
    Column("csat_average", "CSAT average", "score"),
    Column("csat_satisfied_pct", "CSAT satisfied", "percent"),
    Column("csat_responses", "CSAT answers", "count"),
    Column("csat_sent", "CSAT surveys", "count"),
)
VOLUME_COLUMNS = (
    Column("tickets_opened", "Tickets opened", "count"),
    Column("messages_in", "Messages in", "count"),
    Column("messages_out", "Messages out", "count"),
)


def columns(table: str) -> tuple[Column, ...]:
    """Volume is kept per day and per channel only, so only those tables show it; CSAT per
    agent and team."""
    label = Column("label", "Day" if table == "day" else table.title(), "text")
    extra: tuple[Column, ...] = VOLUME_COLUMNS if table in ("day", "channel") else ()
    if table in ("agent", "team"):
        extra = CSAT_COLUMNS
    return (label, *COLUMNS[1:], *extra)


def _values(group: dict[str, Any]) -> dict[str, Any]:
    values = {
        "label": group["label"],
        "first_response_median": group["first_response"]["median_s"],
        "first_response_p90": group["first_response"]["p90_s"],
        "first_responses": group["first_response"]["count"],
        "response_median": group["response"]["median_s"],
        "resolution_median": group["resolution"]["median_s"],
        "resolutions": group["resolution"]["count"],
        **group["sla"],
    }
    if "csat" in group:
        values |= {f"csat_{name}": value for name, value in group["csat"].items()}
    return values | group.get("volume", {})


def cell_text(column: Column, value: Any) -> str:
    if column.kind == "duration":
        return human(value)
    if column.kind == "percent":
        return percent(value)
    if column.kind == "score":
        return NO_DATA if value is None else f"{value:.2f}"
    return str(value)


# A spreadsheet runs a cell beginning with one of these as a formula (OWASP, CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_text(text: str) -> str:
    """Names come from agents and API tokens: a leading `'` makes a spreadsheet show a name such
    as `=HYPERLINK(...)` as text instead of running it."""
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def raw(column: Column, value: Any) -> str:
    """What the CSV holds: seconds and percentages as numbers, nothing for no data, names as
    text a spreadsheet never runs."""
    if value is None:
        return ""
    if column.kind == "duration":
        return str(int(round(value)))
    if column.kind == "text":
        return spreadsheet_text(str(value))
    return str(value)


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    rows: list[dict[str, Any]]
    sort: str
    direction: str

    @property
    def title(self) -> str:
        return TABLE_TITLES[self.name]


def table(brand, period, name: str, sort: str = "", direction: str = "asc") -> Table:
    """One breakdown, sorted as asked; rows without a value sort last either way."""
    cols = columns(name)
    keys = {c.key for c in cols}
    sort = sort if sort in keys else "label"
    direction = direction if direction in ("asc", "desc") else "asc"
    figures = summary(brand, period.start, period.end, period.business_hours, group_by=name)
    rows = [_values(group) for group in figures["groups"]]
    if sort != "label" or direction != "asc" or name == "day":
        present = [r for r in rows if r.get(sort) is not None]
        missing = [r for r in rows if r.get(sort) is None]
        present.sort(
            key=lambda r: r[sort].lower() if isinstance(r[sort], str) else r[sort],
            reverse=direction == "desc",
        )
        rows = present + missing
    return Table(name, cols, rows, sort, direction)
