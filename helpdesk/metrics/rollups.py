"""Daily rollups (docs/metrics.md), rebuilt from the metric events of the brand-local days they
cover, so dashboards read a few rows per day instead of every ticket."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import date

from sqlalchemy import Text, cast, delete, func, select

from helpdesk.extensions import db
from helpdesk.metrics.compute import dense_histogram, dimension_keys
from helpdesk.metrics.models import MetricEvent, MetricRollup
from helpdesk.metrics.plumbing import bulk_insert, chunks, lock

DAY_BATCH = 31  # rollup days rebuilt per statement
ROLLUP_COLUMNS = (
    "brand_id", "dimension", "day", "key", "kind", "count", "calendar_sum", "business_sum",
    "calendar_hist", "business_hist", "sla_total", "sla_met",
)  # fmt: skip


class _Rollup:
    """The totals of one rollup row while it is built from grouped metric events."""

    __slots__ = ("count", "calendar", "business", "calendar_hist", "business_hist", "sla", "met")

    def __init__(self) -> None:
        self.count, self.calendar, self.business = 0, 0.0, 0.0
        self.calendar_hist: dict[int, int] = {}
        self.business_hist: dict[int, int] = {}
        self.sla = self.met = 0

    def add(
        self,
        count: int,
        calendar: float | None,
        business: float | None,
        calendar_bucket: int | None,
        business_bucket: int | None,
        sla_met: bool | None,
    ) -> None:
        """A group of metric events sharing day, kind, dimension values, buckets and outcome."""
        if calendar_bucket is not None:
            self.count += count
            self.calendar += calendar
            self.business += business
            hist = self.calendar_hist
            hist[calendar_bucket] = hist.get(calendar_bucket, 0) + count
            hist = self.business_hist
            hist[business_bucket] = hist.get(business_bucket, 0) + count
        if sla_met is not None:
            self.sla += count
            if sla_met:
                self.met += count

    def values(self) -> tuple:
        return (
            self.count,
            self.calendar,
            self.business,
            dense_histogram(self.calendar_hist),
            dense_histogram(self.business_hist),
            self.sla,
            self.met,
        )


def rebuild_rollups(brand_id: int, days: Iterable[date]) -> int:
    """Rebuild the rollups of these brand-local days from the metric events; returns how many
    days. Aggregation happens in SQL down to (day, dimension values, buckets) first."""
    ordered = sorted(set(days))
    tags_text = cast(MetricEvent.tag_ids, Text)
    for batch in chunks(ordered, DAY_BATCH):
        lock(f"metrics:day:{brand_id}:{day.isoformat()}" for day in batch)
        db.session.execute(
            delete(MetricRollup)
            .where(MetricRollup.brand_id == brand_id, MetricRollup.day.in_(batch))
            .execution_options(synchronize_session=False)
        )
        groups = (
            MetricEvent.day,
            MetricEvent.kind,
            MetricEvent.agent_id,
            MetricEvent.from_app,
            MetricEvent.team_id,
            MetricEvent.channel_id,
            tags_text.label("tags"),
            MetricEvent.calendar_bucket,
            MetricEvent.business_bucket,
            MetricEvent.sla_met,
        )
        query = (
            select(
                *groups,
                func.count().label("count"),
                func.sum(MetricEvent.calendar_seconds).label("calendar_sum"),
                func.sum(MetricEvent.business_seconds).label("business_sum"),
            )
            .where(MetricEvent.brand_id == brand_id, MetricEvent.day.in_(batch))
            .group_by(*groups)
        )
        totals: dict[tuple[str, date, str, str], _Rollup] = {}
        # Rows repeat a few combinations of agent, team, channel and tags: their keys are cached.
        keys_of: dict[tuple, list[tuple[str, str]]] = {}
        for (
            day, kind, agent_id, from_app, team_id, channel_id, tags, calendar_bucket,
            business_bucket, sla_met, count, calendar, business,
        ) in db.session.execute(query):  # fmt: skip
            who = (agent_id, from_app, team_id, channel_id, tags)
            keys = keys_of.get(who)
            if keys is None:
                tag_ids = json.loads(tags) if tags else []
                keys = keys_of[who] = dimension_keys(
                    agent_id, from_app, team_id, channel_id, tag_ids
                )
            for dimension, key in keys:
                total = totals.get((dimension, day, key, kind))
                if total is None:
                    total = totals[(dimension, day, key, kind)] = _Rollup()
                total.add(count, calendar, business, calendar_bucket, business_bucket, sla_met)
        bulk_insert(
            MetricRollup,
            ROLLUP_COLUMNS,
            [
                (brand_id, dimension, day, key, kind, *total.values())
                for (dimension, day, key, kind), total in totals.items()
            ],
        )
    return len(ordered)
