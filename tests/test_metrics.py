"""Metrics (docs/metrics.md): a known two-week history built through the webhook intake and the
console, every headline figure checked against arithmetic done by hand, in calendar and business
seconds.

The history and its scenario, ticket by ticket, are in tests/helpers/metrics.py.
"""

from __future__ import annotations

import math
import random
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import delete, func, select

from helpdesk.extensions import db
from helpdesk.metrics import service as metrics
from helpdesk.metrics.cli import recompute_metrics_command
from helpdesk.metrics.compute import (
    BusinessClock,
    bucket_of,
    exact_quantile,
    histogram_quantile,
)
from helpdesk.metrics.models import (
    MetricEvent,
    MetricRollup,
    MetricTicketState,
    MetricVolume,
)
from helpdesk.metrics.summary import daily_trend, heatmap, previous_period, summary
from helpdesk.sla import service as sla
from helpdesk.sla.calendar import business_seconds_between
from helpdesk.tickets.models import Ticket, TicketStatus
from helpdesk.tickets.tags import add_tag, create_tag
from tests.conftest import race
from tests.factories import AgentFactory, at, member
from tests.helpers.metrics import FIRST, LAST, History
from workers.tasks.metrics import record_ticket_metrics, sweep_metrics


@pytest.fixture
def history(client) -> History:
    history = History(client)
    history.build()
    return history


def _stats(median: float, p90: float, mean: float, n: int) -> dict:
    return {
        "median_s": pytest.approx(median, abs=0.05),
        "p90_s": pytest.approx(p90, abs=0.05),
        "mean_s": pytest.approx(mean, abs=0.05),
        "count": n,
    }


def test_the_history_is_what_the_scenario_says(history):
    t2, t4 = history.ticket(2), history.ticket(4)
    assert t2.reopen_count == 1 and t2.status is TicketStatus.RESOLVED
    assert t2.breached == ["first_response"]  # the reopen forgot nothing but the first response
    assert sorted(t4.breached) == ["first_response", "resolution"]
    assert history.ticket(3).status is TicketStatus.RESOLVED
    assert history.ticket(5).status is TicketStatus.OPEN


def test_every_headline_figure_in_calendar_seconds(history):
    history.run_workers()
    figures = summary(history.brand, FIRST, LAST)

    # First responses: T1 08:30->08:50 = 1200; T3 08:00->08:45 = 2700; T2 Fri 15:00->23:30 =
    # 30600 (the reopen keeps it); T5 08:00->08:10 = 600. Sorted 600, 1200, 2700, 30600:
    # median (1200 + 2700) / 2 = 1950; p90 at rank 0.9 * 3 = 2.7: 2700 + 0.7 * 27900 = 22230;
    # mean 35100 / 4 = 8775.
    assert figures["first_response"] == _stats(1950, 22230, 8775, 4)
    # Responses, one per wait: T1 1200 and 09:00->10:00 = 3600 (09:05 did not start a wait);
    # T3 2700 and Wed 14:00->15:30 = 5400 (pending does not shorten it); T2 30600,
    # Sat 10:00->Mon 08:30 = 167400 and, reopened, Tue 10:00->11:00 = 3600; T5 600 and 1200.
    # Sorted 600, 1200, 1200, 2700, 3600, 3600, 5400, 30600, 167400: median 3600; p90 at rank
    # 7.2: 30600 + 0.2 * 136800 = 57960; mean 216300 / 9 = 24033.3.
    assert figures["response"] == _stats(3600, 57960, 24033.3, 9)
    # Resolutions: T1 08:30->11:00 = 9000; T3 Tue 08:00->Thu 10:00 = 50 h = 180000; T2 from Fri
    # 15:00 to its last resolution Tue 12:00 = 93 h = 334800. Median 180000; p90 at rank 1.8:
    # 180000 + 0.8 * 154800 = 303840; mean 523800 / 3 = 174600.
    assert figures["resolution"] == _stats(180000, 303840, 174600, 3)
    # First response target concluded: T1, T3, T5 met; T2 (swept at 16:30, due 16:00) and T4
    # (never answered) breached: 3 / 5. Resolution: T1, T2, T3 met, T4 breached: 3 / 4.
    assert figures["sla"] == {"first_response_met_pct": 60.0, "resolution_met_pct": 75.0}
    # Five tickets; customers wrote 3 (T1) + 2 (T3) + 1 (T4) + 3 (T2) + 2 (T5) = 11 messages;
    # the brand 2 (A, T1) + 2 (B, T3) + 3 (app, app, A: T2) + 2 (app, T5) = 9.
    assert figures["volume"] == {"tickets_opened": 5, "messages_in": 11, "messages_out": 9}
    # Now: T4 and T5 are open; T4 has no assignee and is breached.
    assert figures["backlog"] == {"open": 2, "unassigned": 1, "breached": 1}
    assert figures["sample_warning"] is True
    assert figures["groups"] == []


def test_every_headline_figure_in_business_seconds(history):
    history.run_workers()
    figures = summary(history.brand, FIRST, LAST, business_hours=True)

    # Open 08:00-16:00 UTC on weekdays. First responses: T1 1200; T3 2700; T2 Fri 15:00->16:00
    # = 3600 (the evening is closed); T5 600. Sorted 600, 1200, 2700, 3600: median 1950;
    # p90 2700 + 0.7 * 900 = 3330; mean 8100 / 4 = 2025.
    assert figures["first_response"] == _stats(1950, 3330, 2025, 4)
    # Responses: T1 1200, 3600; T3 2700, 5400; T2 3600, the weekend wait only Mon 08:00->08:30
    # = 1800, then 3600; T5 600, 1200. Sorted 600, 1200, 1200, 1800, 2700, 3600, 3600, 3600,
    # 5400: median 2700; p90 3600 + 0.2 * 1800 = 3960; mean 23700 / 9 = 2633.3.
    assert figures["response"] == _stats(2700, 3960, 2633.3, 9)
    # Resolutions: T1 9000; T3 Tue 8 h + Wed 8 h + Thu 08:00-10:00 2 h = 64800; T2 Fri 1 h +
    # Mon 8 h + Tue 08:00-12:00 4 h = 46800. Median 46800; p90 46800 + 0.8 * 18000 = 61200;
    # mean 120600 / 3 = 40200.
    assert figures["resolution"] == _stats(46800, 61200, 40200, 3)
    assert figures["sla"] == {"first_response_met_pct": 60.0, "resolution_met_pct": 75.0}
    assert figures["volume"] == {"tickets_opened": 5, "messages_in": 11, "messages_out": 9}
    assert figures["backlog"] == {"open": 2, "unassigned": 1, "breached": 1}


def test_business_seconds_are_those_of_the_sla_calendar(history):
    history.run_workers()
    clock = BusinessClock(sla.get_calendar(history.brand))
    rows = db.session.execute(
        select(MetricEvent.started_at, MetricEvent.ended_at, MetricEvent.business_seconds).where(
            MetricEvent.ended_at.is_not(None)
        )
    ).all()
    assert len(rows) == 16
    for started, ended, business in rows:
        assert business == business_seconds_between(clock.calendar, started, ended)


def _group(figures: dict, label: str) -> dict:
    return next(group for group in figures["groups"] if group["label"] == label)


def test_breakdown_by_agent_credits_the_replier_and_the_assignee_at_resolution(history):
    history.run_workers()
    figures = summary(history.brand, FIRST, LAST, group_by="agent")
    assert [g["label"] for g in figures["groups"]] == [
        "Ada Agent",
        "Ben Agent",
        "Instagram app",
        "No agent",
    ]
    ada, ben = _group(figures, "Ada Agent"), _group(figures, "Ben Agent")
    app, nobody = _group(figures, "Instagram app"), _group(figures, "No agent")
    assert ada["key"] == history.a.id and app["key"] == "app" and nobody["key"] is None
    # A: first response of T1 (1200); responses 1200, 3600 (T1) and 3600 (T2 after the reopen):
    # median 3600, p90 at rank 1.8 = 3600, mean 8400 / 3 = 2800; resolution of T1 (9000).
    assert ada["first_response"] == _stats(1200, 1200, 1200, 1)
    assert ada["response"] == _stats(3600, 3600, 2800, 3)
    assert ada["resolution"] == _stats(9000, 9000, 9000, 1)
    # B: T3's first response 2700; responses 2700, 5400 (median 4050, p90 2700 + 0.9 * 2700 =
    # 5130); T2 was assigned to B when resolved the last time although A replied: resolutions
    # 180000 (T3) and 334800 (T2): median 257400, p90 180000 + 0.9 * 154800 = 319320.
    assert ben["first_response"] == _stats(2700, 2700, 2700, 1)
    assert ben["response"] == _stats(4050, 5130, 4050, 2)
    assert ben["resolution"] == _stats(257400, 319320, 257400, 2)
    # The app: first responses 30600 (T2) and 600 (T5); responses 600, 1200, 30600, 167400:
    # median 15900, p90 at rank 2.7 = 30600 + 0.7 * 136800 = 126360, mean 199800 / 4 = 49950.
    assert app["first_response"] == _stats(15600, 27600, 15600, 2)
    assert app["response"] == _stats(15900, 126360, 49950, 4)
    assert app["resolution"]["count"] == 0
    # Nobody: T4's breaches, unanswered and unassigned: compliance only.
    assert nobody["first_response"]["count"] == 0
    assert nobody["sla"] == {"first_response_met_pct": 0.0, "resolution_met_pct": 0.0}
    assert ada["sla"] == {"first_response_met_pct": 100.0, "resolution_met_pct": 100.0}
    assert app["sla"] == {"first_response_met_pct": 50.0, "resolution_met_pct": None}


def test_breakdown_by_team_tag_and_channel(history):
    history.run_workers()
    team = summary(history.brand, FIRST, LAST, group_by="team")
    support = _group(team, "Support")
    assert support["key"] == history.team.id
    # T1 and T3: first responses 1200 and 2700; resolutions 9000 and 180000.
    assert support["first_response"] == _stats(1950, 2550, 1950, 2)
    assert support["resolution"] == _stats(94500, 162900, 94500, 2)
    assert _group(team, "No team")["first_response"]["count"] == 2  # T2, T5

    tags = summary(history.brand, FIRST, LAST, group_by="tag")
    # vip: T3 and T2: first responses 2700 and 30600 (median 16650, p90 2700 + 0.9 * 27900).
    assert _group(tags, "vip")["first_response"] == _stats(16650, 27810, 16650, 2)
    assert _group(tags, "shipping")["first_response"] == _stats(30600, 30600, 30600, 1)
    assert _group(tags, "No tag")["first_response"]["count"] == 2  # T1, T5

    channels = summary(history.brand, FIRST, LAST, group_by="channel")
    main, outlet = _group(channels, "Main"), _group(channels, "Outlet")
    assert main["first_response"]["count"] == 3 and outlet["first_response"]["count"] == 1
    assert outlet["response"] == _stats(900, 1140, 900, 2)  # T5: 600 and 1200
    assert main["volume"] == {"tickets_opened": 4, "messages_in": 9, "messages_out": 7}
    assert outlet["volume"] == {"tickets_opened": 1, "messages_in": 2, "messages_out": 2}


def test_breakdown_by_day_uses_the_brand_local_date_of_the_reply(history):
    history.run_workers()
    figures = summary(history.brand, FIRST, LAST, group_by="day")
    first = {g["key"]: g["first_response"]["count"] for g in figures["groups"]}
    # T2's app reply at Fri 23:30 UTC is Saturday 00:30 in Berlin.
    assert {day: n for day, n in first.items() if n} == {
        "2026-11-09": 1,
        "2026-11-10": 1,
        "2026-11-14": 1,
        "2026-11-18": 1,
    }
    monday = next(g for g in figures["groups"] if g["key"] == "2026-11-09")
    assert monday["volume"] == {"tickets_opened": 1, "messages_in": 3, "messages_out": 2}
    # Resolutions on Thu 11-12 (T3), Mon 11-09 (T1) and Tue 11-17 (T2, the second one only).
    resolved = {g["key"] for g in figures["groups"] if g["resolution"]["count"]}
    assert resolved == {"2026-11-09", "2026-11-12", "2026-11-17"}


def test_daily_trend_heatmap_and_previous_period(history):
    history.run_workers()
    trend = daily_trend(history.brand, FIRST, LAST)
    assert len(trend) == 14
    assert trend[0] == {
        "day": "2026-11-09",
        "first_response": {"median_s": 1200.0, "count": 1},
        "tickets_opened": 1,
        "messages_in": 3,
        "messages_out": 2,
    }
    assert trend[5]["first_response"] == {"median_s": 30600.0, "count": 1}  # Saturday
    assert trend[6]["first_response"] == {"median_s": None, "count": 0}

    cells = heatmap(history.brand, FIRST, LAST)
    # Customer messages in local time: Mon 09:30, 10:00, 10:05; Tue 09:00 and 11:00; Wed 15:00,
    # 09:00 and 10:00 (the 18th); Thu 17:30; Fri 16:00; Sat 11:00.
    expected = {(0, 9): 1, (0, 10): 2, (1, 9): 1, (1, 11): 1, (2, 9): 1, (2, 10): 1, (2, 15): 1}
    expected |= {(3, 17): 1, (4, 16): 1, (5, 11): 1}
    found = {(d, h): n for d, row in enumerate(cells) for h, n in enumerate(row) if n}
    assert found == expected

    assert previous_period(FIRST, LAST) == (date(2026, 10, 26), date(2026, 11, 8))


def test_an_empty_range_gives_zeros_and_none(history):
    history.run_workers()
    figures = summary(history.brand, date(2026, 1, 1), date(2026, 1, 31), group_by="agent")
    empty = {"median_s": None, "p90_s": None, "mean_s": None, "count": 0}
    assert figures["first_response"] == figures["response"] == figures["resolution"] == empty
    assert figures["sla"] == {"first_response_met_pct": None, "resolution_met_pct": None}
    assert figures["volume"] == {"tickets_opened": 0, "messages_in": 0, "messages_out": 0}
    assert figures["groups"] == []
    reversed_range = summary(history.brand, LAST, FIRST)
    assert reversed_range["first_response"] == empty


def test_an_unknown_breakdown_is_refused(history):
    from helpdesk.errors import ValidationError

    with pytest.raises(ValidationError):
        summary(history.brand, FIRST, LAST, group_by="planet")


def _all_figures(brand) -> list[dict]:
    return [
        summary(brand, FIRST, LAST, business_hours=business, group_by=group_by)
        for business in (False, True)
        for group_by in (None, "agent", "team", "tag", "channel", "day")
    ]


def _metric_rows() -> list[tuple]:
    return sorted(
        db.session.execute(
            select(
                MetricEvent.ticket_id,
                MetricEvent.kind,
                MetricEvent.seq,
                MetricEvent.ended_at,
                MetricEvent.business_seconds,
                MetricEvent.agent_id,
                MetricEvent.day,
                MetricEvent.sla_met,
            )
        ).all(),
        key=repr,
    )


def test_refreshing_twice_changes_nothing(history):
    history.run_workers()
    before, figures = _metric_rows(), _all_figures(history.brand)
    history.run_workers()
    assert _metric_rows() == before
    assert _all_figures(history.brand) == figures


def test_recompute_reproduces_the_workers_figures(history):
    history.run_workers()
    figures, rows = _all_figures(history.brand), _metric_rows()
    for model in (MetricEvent, MetricRollup, MetricVolume, MetricTicketState):
        db.session.execute(delete(model))
    db.session.commit()
    assert summary(history.brand, FIRST, LAST)["first_response"]["count"] == 0

    report = metrics.recompute_metrics(history.brand)
    assert report.tickets == 5 and report.metric_events == 18  # 16 durations, 2 breaches of T4
    assert _metric_rows() == rows
    assert _all_figures(history.brand) == figures

    metrics.recompute_metrics(history.brand, since=date(2026, 11, 16))
    assert _metric_rows() == rows
    assert _all_figures(history.brand) == figures


def test_the_sweep_alone_catches_up(history):
    """No task was enqueued (a webhook echo, a lost message to the broker): the sweep finds the
    tickets by their events."""
    sweep_metrics()
    figures = _all_figures(history.brand)
    history.run_workers()
    assert _all_figures(history.brand) == figures
    assert summary(history.brand, FIRST, LAST)["response"]["count"] == 9


def test_the_sweep_recomputes_only_tickets_that_changed(history):
    history.run_workers()
    assert metrics.sweep_metrics().tickets == 0
    add_tag(history.ticket(1), "vip", history.a)
    db.session.commit()
    report = metrics.sweep_metrics()
    db.session.commit()
    assert report.tickets == 1
    tags = summary(history.brand, FIRST, LAST, group_by="tag")
    assert _group(tags, "vip")["first_response"]["count"] == 3


def test_two_workers_recomputing_at_once_agree(app, history):
    """The same ticket and tickets sharing days, refreshed by four workers at the same moment:
    the locks serialise them and the result is the one a single worker gives."""
    history.run_workers()
    figures, rows = _all_figures(history.brand), _metric_rows()
    t1, t2, t3 = (history.ticket(n).id for n in (1, 2, 3))
    queue = [t2, t2, t1, t3]
    db.session.commit()  # the test's own transaction would hold SQLite's write lock

    def work() -> set:
        return metrics.refresh_ticket_metrics(queue.pop())

    outcomes = race(app, work, count=4)
    assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
    db.session.expire_all()
    assert _metric_rows() == rows
    assert _all_figures(history.brand) == figures


def test_the_cli_recomputes_a_brand(history, runner):
    history.run_workers()
    figures = _all_figures(history.brand)
    db.session.execute(delete(MetricRollup))
    db.session.commit()
    result = runner.invoke(
        recompute_metrics_command, ["--brand", history.brand.slug, "--since", "2026-11-01"]
    )
    assert result.exit_code == 0, result.output
    assert "recomputed 5 tickets" in result.output
    assert _all_figures(history.brand) == figures


# Percentiles from rollups ---------------------------------------------------------------------


def test_histogram_percentiles_are_within_5_percent_of_exact():
    rng = random.Random(7)
    worst = 0.0
    for mu, sigma in ((5.0, 1.0), (7.1, 1.1), (9.0, 2.0), (3.0, 0.3)):
        values = [rng.lognormvariate(mu, sigma) + 1 for _ in range(3000)]
        ordered = sorted(values)
        histogram: dict[int, int] = {}
        for value in values:
            histogram[bucket_of(value)] = histogram.get(bucket_of(value), 0) + 1
        for q in (0.5, 0.9):
            exact = exact_quantile(ordered, q)
            error = abs(histogram_quantile(histogram, q) - exact) / exact
            worst = max(worst, error)
    assert worst < 0.05
    assert worst < 0.02  # measured: the geometric midpoint keeps it well inside the bound


def test_rollup_percentiles_match_exact_ones_within_5_percent(history):
    """Thousands of random durations stored as metric events over 30 days; the summary read from
    the rollups (exact percentiles switched off) against the exact values."""
    ticket = history.ticket(1)
    rng = random.Random(11)
    start = at("2026-10-01 08:00")
    values = [round(rng.lognormvariate(7.1, 1.3) + 30, 3) for _ in range(4000)]
    rows = []
    for seq, value in enumerate(values):
        ended = start + timedelta(hours=seq % (30 * 24))
        rows.append(
            MetricEvent(
                brand_id=history.brand_id,
                ticket_id=ticket.id,
                kind="response",
                seq=1000 + seq,
                started_at=ended - timedelta(seconds=value),
                ended_at=ended,
                calendar_seconds=value,
                business_seconds=value,
                calendar_bucket=bucket_of(value),
                business_bucket=bucket_of(value),
                channel_id=ticket.channel_id,
                tag_ids=[],
                day=ended.date(),
                from_app=False,
            )
        )
    db.session.add_all(rows)
    db.session.flush()
    metrics.rebuild_rollups(history.brand_id, {row.day for row in rows})
    db.session.commit()
    october = (date(2026, 10, 1), date(2026, 10, 31))
    ordered = sorted(values)
    from_rollups = summary(history.brand, *october, exact_limit=0)["response"]
    exact = summary(history.brand, *october, exact_limit=10_000)["response"]
    assert from_rollups["count"] == exact["count"] == 4000
    assert exact["median_s"] == pytest.approx(exact_quantile(ordered, 0.5), abs=0.05)
    assert exact["p90_s"] == pytest.approx(exact_quantile(ordered, 0.9), abs=0.05)
    assert from_rollups["mean_s"] == pytest.approx(math.fsum(values) / 4000, abs=0.05)
    for key in ("median_s", "p90_s"):
        assert abs(from_rollups[key] - exact[key]) / exact[key] < 0.05


def test_rollups_count_every_metric_event(history):
    history.run_workers()
    total = db.session.scalar(
        select(func.sum(MetricRollup.count)).where(MetricRollup.dimension == "all")
    )
    assert total == 16
    assert db.session.scalar(select(func.count()).select_from(MetricTicketState)) == 5


# Bulk history ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_recompute_over_seeded_history_equals_the_workers_ticket_by_ticket(client):
    """seed-load history with tickets and events written in bulk: the set-based recompute gives
    the same metric events and figures as the per-ticket task and the sweep."""
    from devtools.seed.load import seed_load
    from helpdesk.metrics.history import build_ticket_history

    history = History(client)
    for _n in range(3):
        member(AgentFactory(), history.brand)
    create_tag(history.brand, history.manager, "vip")
    create_tag(history.brand, history.manager, "returns")
    db.session.commit()
    seed_load(history.brand, 1500, days=20, seed=3)
    built = build_ticket_history(history.brand)
    assert built.tickets > 50 and built.events > built.tickets * 3

    report = metrics.recompute_metrics(history.brand)
    assert report.tickets == built.tickets and report.metric_events > built.tickets
    today = datetime.now().date()
    window = (today - timedelta(days=30), today)

    def figures() -> list[dict]:
        return [
            summary(history.brand, *window, business_hours=b, group_by=g, exact_limit=e)
            for b in (False, True)
            for g in (None, "agent", "tag", "day")
            for e in (0, 10_000)
        ]

    recomputed, rows = figures(), _metric_rows()
    assert recomputed[0]["response"]["count"] > 100
    assert {g["label"] for g in recomputed[4]["groups"]} == {"vip", "returns", "No tag"}
    for model in (MetricEvent, MetricRollup, MetricVolume, MetricTicketState):
        db.session.execute(delete(model))
    db.session.commit()
    for ticket_id in db.session.scalars(select(Ticket.id)).all():
        record_ticket_metrics(ticket_id)
    sweep_metrics()
    assert _metric_rows() == rows
    assert figures() == recomputed


def test_api_summary_answers_the_same_numbers_as_the_service(client):
    from datetime import date

    from helpdesk.accounts.tokens import create_token
    from helpdesk.metrics.summary import summary as service_summary
    from tests.factories import BrandFactory

    brand = BrandFactory()
    _row, token = create_token(brand, "metrics", "manager")
    _agent_row, agent_token = create_token(brand, "agent", "agent")
    db.session.commit()
    headers = {"Authorization": f"Bearer {token}"}
    response = client.get(
        "/api/v1/metrics/summary?from=2026-11-01&to=2026-11-30&business_hours=1", headers=headers
    )
    assert response.status_code == 200
    expected = service_summary(brand, date(2026, 11, 1), date(2026, 11, 30), True, None)
    assert response.json["first_response"] == expected["first_response"]
    assert response.json["volume"] == expected["volume"]
    refused = client.get(
        "/api/v1/metrics/summary", headers={"Authorization": f"Bearer {agent_token}"}
    )
    assert refused.status_code == 403
    bad = client.get("/api/v1/metrics/summary?from=2026-12-01&to=2026-11-01", headers=headers)
    assert bad.status_code == 422
