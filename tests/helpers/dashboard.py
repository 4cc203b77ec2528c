"""How the metrics history (tests/helpers/metrics.py) looks on the managers' dashboard."""

from __future__ import annotations

from helpdesk.web.dashboard.figures import columns, human, percent

BACKLOG = {"open": "2", "unassigned": "1", "breached": "1"}


def headline(figures: dict) -> dict[str, str]:
    """The history's headline figures as the dashboard shows them, `figures` being summary()'s."""
    return {
        "first_response_median": "32m",
        "first_response_p90": "6h 10m",
        "response_median": human(figures["response"]["median_s"]),
        "resolution_median": human(figures["resolution"]["median_s"]),
        "first_response_met_pct": percent(60.0),
        "resolution_met_pct": percent(75.0),
        "tickets_opened": "5",
        "messages_in": "11",
        "messages_out": "9",
    }


def as_shown(name: str, line: list[str]) -> list[str]:
    """A CSV line (raw seconds and percentages) in the page's format."""
    shown = []
    for column, value in zip(columns(name), line, strict=True):
        if column.kind == "duration":
            shown.append(human(float(value)) if value else "no data")
        elif column.kind == "percent":
            shown.append(percent(float(value)) if value else "no data")
        elif column.kind == "score":  # a CSAT average
            shown.append(f"{float(value):.2f}" if value else "no data")
        else:
            shown.append(value)
    return shown
