"""CSAT figures for the metrics summary: surveys sent on the brand-local dates of a range, the
answers they got (whenever given), their average and the share of satisfied answers (4 or 5).

Read straight from the tickets (ix_tickets_brand_status_assignee narrows to the brand; the
range is on csat_sent_at): one grouped query, so the figures are exact, not estimated. A ticket
counts for the agent and team it has now, normally the ones who resolved it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from helpdesk.brands.models import Brand
from helpdesk.extensions import db
from helpdesk.tickets.models import Ticket

GROUPS = {"agent": Ticket.assignee_id, "team": Ticket.team_id}
SATISFIED = 4  # 4 or 5 out of 5


def empty() -> dict[str, Any]:
    return {"sent": 0, "responses": 0, "average": None, "satisfied_pct": None}


def _figures(sent: int, responses: int, total: int, satisfied: int) -> dict[str, Any]:
    if not responses:
        return {**empty(), "sent": sent}
    return {
        "sent": sent,
        "responses": responses,
        "average": round(total / responses, 2),
        "satisfied_pct": round(100.0 * satisfied / responses, 1),
    }


def _bounds(brand: Brand, start: date, end: date) -> tuple[datetime, datetime]:
    """The UTC moments between which the brand-local dates start..end (inclusive) lie."""
    zone = ZoneInfo(brand.timezone)
    first = datetime.combine(start, time.min, tzinfo=zone).astimezone(UTC)
    after = datetime.combine(end + timedelta(days=1), time.min, tzinfo=zone).astimezone(UTC)
    return first, after


def csat(
    brand: Brand, start: date, end: date, group_by: str | None = None
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The range's figures, and per group key ("12", or "none" without an agent or team) when
    grouped by agent or team; other groupings get the overall figures only."""
    column = GROUPS.get(group_by or "")
    first, after = _bounds(brand, start, end)
    counts = (
        func.count(),
        func.count(Ticket.csat_score),
        func.coalesce(func.sum(Ticket.csat_score), 0),
        func.count().filter(Ticket.csat_score >= SATISFIED),
    )
    in_range = (
        Ticket.brand_id == brand.id,
        Ticket.csat_sent_at >= first,
        Ticket.csat_sent_at < after,
    )
    if column is None:
        row = db.session.execute(select(*counts).where(*in_range)).one()
        return _figures(*map(int, row)), {}
    totals = [0, 0, 0, 0]
    by_key: dict[str, dict[str, Any]] = {}
    for group, *values in db.session.execute(
        select(column, *counts).where(*in_range).group_by(column)
    ):
        numbers = [int(value) for value in values]
        totals = [a + b for a, b in zip(totals, numbers, strict=True)]
        by_key[str(group) if group is not None else "none"] = _figures(*numbers)
    return _figures(*totals), by_key
