"""The managers' dashboard, driven through its pages over the metrics history of tests/helpers:
figures equal to summary(), roles and brands kept apart, CSV equal to the tables, bad queries
answered with a flash, and the server-drawn SVG charts."""

from __future__ import annotations

import csv
import html
import io
import re
from datetime import date

import pytest

from helpdesk.metrics.summary import previous_period, summary
from helpdesk.web.dashboard.figures import TABLES, columns, human
from tests.helpers.console import post, signed_in
from tests.helpers.dashboard import BACKLOG, as_shown, headline
from tests.helpers.metrics import FIRST, LAST, History
from tests.helpers.world import World

pytestmark = pytest.mark.slow  # each test builds the two-week metrics history: 4 to 9 s

RANGE = {"from": FIRST.isoformat(), "to": LAST.isoformat()}


@pytest.fixture
def history(client) -> History:
    history = History(client)
    history.build()
    history.run_workers()
    return history


@pytest.fixture
def manager(client, history):
    return signed_in(client, history.manager)


def page(client, **args) -> str:
    response = client.get("/dashboard", query_string=args)
    assert response.status_code == 200, response.get_data(as_text=True)[:1000]
    return response.get_data(as_text=True)


def figure(text: str, key: str) -> str:
    found = re.search(rf'data-figure="{key}">.*?class="value[^"]*">([^<]*)<', text, re.S)
    assert found, key
    return html.unescape(found.group(1))


def table_rows(text: str, name: str) -> tuple[list[str], list[list[str]]]:
    """The header and the cells of one dashboard table, as a reader sees them."""
    found = re.search(rf'<table class="dash-table" data-table="{name}">(.*?)</table>', text, re.S)
    assert found, name
    body = found.group(1)
    header = [
        html.unescape(re.sub(r"\s*[▲▼]$", "", h.strip()))
        for h in re.findall(r"<th[^>]*>\s*<a[^>]*>(.*?)</a>", body, re.S)
    ]
    rows = [
        [html.unescape(cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        for row in re.findall(r"<tr>(.*?)</tr>", body.split("<tbody>")[1], re.S)
    ]
    return header, rows


def export(client, **args) -> list[list[str]]:
    response = client.get("/dashboard/export.csv", query_string=args)
    assert response.status_code == 200
    return list(csv.reader(io.StringIO(response.get_data(as_text=True))))


def test_manager_sees_the_figures_of_summary(client, manager, history):
    text = page(client, **RANGE)
    figures = summary(history.brand, FIRST, LAST)
    assert figure(text, "first_response_median") == human(figures["first_response"]["median_s"])
    for key, shown in headline(figures).items():
        assert figure(text, key) == shown, key
    for key, shown in BACKLOG.items():
        assert f'data-backlog="{key}">{shown}<' in text, key
    assert "sample under 20" in text
    # The period before is empty: nothing to compare with, said rather than invented.
    assert previous_period(FIRST, LAST)[1] == date(2026, 11, 8)
    assert "no comparison" in text and "+11 vs previous period" in text


def test_the_comparison_is_with_the_previous_period(client, manager, history):
    # 16..22 Nov against 9..15 Nov: first responses 600 (T5) against 1200, 2700, 30600.
    text = page(client, **{"from": "2026-11-16", "to": "2026-11-22"})
    assert figure(text, "first_response_median") == "10m"
    assert "−35m vs previous period" in text


def test_an_agent_is_refused_and_a_stranger_sent_to_sign_in(client, history):
    assert client.get("/dashboard").status_code == 302
    assert "/login" in client.get("/dashboard").headers["Location"]
    assert "/login" in client.get("/dashboard/backlog.json").headers["Location"]
    signed_in(client, history.a)
    assert client.get("/dashboard", query_string=RANGE).status_code == 403
    assert client.get("/dashboard/export.csv", query_string={"table": "agent"}).status_code == 403
    assert client.get("/dashboard/backlog.json").status_code == 403
    assert 'href="/dashboard"' not in client.get("/inbox").get_data(as_text=True)


def test_a_manager_sees_the_dashboard_link(client, manager):
    assert 'href="/dashboard"' in client.get("/inbox").get_data(as_text=True)


def test_a_manager_of_another_brand_sees_only_their_own(client, history):
    other = World("other")
    signed_in(client, other.manager)
    text = page(client, **RANGE)
    assert "Other" in text
    assert figure(text, "messages_in") == "0"
    assert figure(text, "first_response_median") == "no data"
    assert 'data-backlog="breached">0<' in text
    assert "Mia Manager" not in text and "Ada Agent" not in text
    assert post(client, "/brand", {"brand_id": history.brand_id}).status_code == 404
    csv_text = client.get("/dashboard/export.csv", query_string={"table": "agent", **RANGE})
    assert "Ada Agent" not in csv_text.get_data(as_text=True)
    assert client.get("/dashboard/backlog.json").get_json() == {
        "open": 1,
        "unassigned": 1,
        "breached": 0,
    }


@pytest.mark.parametrize("business_hours", ["0", "1"])
def test_every_csv_equals_its_table(client, manager, business_hours):
    args = {**RANGE, "business_hours": business_hours}
    text = page(client, **args)
    for name in TABLES:
        header, rows = table_rows(text, name)
        response = client.get("/dashboard/export.csv", query_string={"table": name, **args})
        assert response.status_code == 200
        assert response.mimetype == "text/csv"
        exported = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
        assert exported[0] == header == [c.label for c in columns(name)]
        assert len(exported) - 1 == len(rows) > 0, name
        for cells, line in zip(rows, exported[1:], strict=True):
            assert as_shown(name, line) == cells, name


def test_tables_sort_by_a_column_and_the_csv_follows(client, manager):
    args = {**RANGE, "sort": "day.messages_in", "dir": "desc"}
    _header, rows = table_rows(page(client, **args), "day")
    counts = [int(r[-2]) for r in rows]
    assert counts == sorted(counts, reverse=True) and counts[0] == 3
    exported = export(client, table="day", **args)
    assert [line[0] for line in exported[1:]] == [r[0] for r in rows]
    # A header links to the opposite direction of the sorted column.
    assert "sort=day.messages_in&amp;dir=asc" in page(client, **args)


def test_an_empty_range_says_no_data(client, manager):
    text = page(client, **{"from": "2026-01-01", "to": "2026-01-31"})
    assert 'id="no-data"' in text
    assert figure(text, "first_response_median") == "no data"
    assert figure(text, "first_response_met_pct") == "no data"
    assert text.count('<p class="nodata">no data</p>') == len(TABLES)
    exported = client.get(
        "/dashboard/export.csv",
        query_string={"table": "agent", "from": "2026-01-01", "to": "2026-01-31"},
    ).get_data(as_text=True)
    assert exported.strip().count("\n") == 0  # the header only


@pytest.mark.parametrize(
    "args, reason",
    [
        ({"from": "2026-11-22", "to": "2026-11-09"}, "from is after to"),
        ({"from": "yesterday", "to": "2026-11-09"}, "from is not a date"),
        ({"from": "2026-11-01", "to": "2026-13-45"}, "to is not a date"),
        ({"from": "2025-01-01", "to": "2026-11-22"}, "at most 366 days"),
    ],
)
def test_bad_queries_flash_and_show_the_default_range(client, manager, args, reason):
    text = page(client, **args, sort="nonsense.x", dir="sideways", business_hours="maybe")
    assert reason in text and "flash-error" in text
    assert "showing the last 30 days instead" in text
    assert "(30 days, calendar time)" in text
    response = client.get("/dashboard/export.csv", query_string={"table": "agent", **args})
    assert response.status_code == 200
    assert client.get("/dashboard/export.csv", query_string={"table": "planet"}).status_code == 400


def test_the_charts_are_inline_svg(client, manager):
    text = page(client, **RANGE)
    assert 'data-chart="trend"' in text and 'data-chart="heatmap"' in text
    trend = re.search(r'<svg[^>]*data-chart="trend".*?</svg>', text, re.S).group(0)
    assert trend.count('class="bar"') == 14
    assert "<polyline" in trend
    heat = re.search(r'<svg[^>]*data-chart="heatmap".*?</svg>', text, re.S).group(0)
    assert heat.count("<rect") == 7 * 24
    assert "Mon 10:00 · 2 messages" in heat
    scripts = re.findall(r'<script src="([^"]+)"', text)
    assert all(src.startswith("/static/") for src in scripts)  # the app's own, no chart library


def test_the_backlog_box_is_polled(client, manager, history):
    assert client.get("/dashboard/backlog.json").get_json() == {
        "open": 2,
        "unassigned": 1,
        "breached": 1,
    }
    text = page(client)
    assert 'data-url="/dashboard/backlog.json"' in text and "30000" in text
