"""The dashboard page, its CSV exports and the backlog the page polls."""

from __future__ import annotations

import csv
import io

from flask import Response, flash, jsonify, render_template, request
from flask.typing import ResponseReturnValue

from helpdesk.metrics.summary import backlog, daily_trend, heatmap
from helpdesk.web.console.context import brand
from helpdesk.web.dashboard import bp
from helpdesk.web.dashboard.charts import heatmap_chart, trend_chart
from helpdesk.web.dashboard.figures import TABLES, cell_text, period_figures, raw, table
from helpdesk.web.dashboard.params import parse_period


def _sort_of(name: str) -> tuple[str, str]:
    """`?sort=agent.resolution_median&dir=desc` sorts the agent table; the others keep theirs."""
    wanted, _, column = request.args.get("sort", "").partition(".")
    if wanted != name:
        return "", "asc"
    return column, request.args.get("dir", "asc")


@bp.get("")
def index() -> ResponseReturnValue:
    period, refused = parse_period(request.args)
    if refused:
        flash(refused, "error")
    current, figures = period_figures(brand(), period)
    tables = [table(brand(), period, name, *_sort_of(name)) for name in TABLES]
    return render_template(
        "dashboard/index.html",
        period=period,
        figures=figures,
        backlog=current["backlog"],
        has_data=any(f.value for f in figures),
        trend=trend_chart(daily_trend(brand(), period.start, period.end, period.business_hours)),
        heat=heatmap_chart(heatmap(brand(), period.start, period.end)),
        tables=tables,
        cell_text=cell_text,
    )


@bp.get("/export.csv")
def export_csv() -> ResponseReturnValue:
    """The page's table as a spreadsheet: same rows, same columns, numbers unformatted."""
    name = request.args.get("table", "")
    if name not in TABLES:
        return {
            "error": {"code": "bad_request", "message": "table: one of " + ", ".join(TABLES)}
        }, 400
    period, _refused = parse_period(request.args)  # a bad range exports the default one
    found = table(brand(), period, name, *_sort_of(name))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([c.label for c in found.columns])
    for row in found.rows:
        writer.writerow([raw(c, row.get(c.key)) for c in found.columns])
    filename = f"{brand().slug}-{name}-{period.start}-{period.end}.csv"
    return Response(
        out.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@bp.get("/backlog.json")
def backlog_json() -> ResponseReturnValue:
    """Polled every 30 s by the page: the backlog is now, not over the range."""
    return jsonify(backlog(brand().id))
