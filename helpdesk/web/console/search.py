"""Search over the brand's messages and contacts."""

from __future__ import annotations

from flask import g, render_template, request
from flask.typing import ResponseReturnValue

from helpdesk.search.service import search as run_search
from helpdesk.web.console import bp
from helpdesk.web.console.context import brand


@bp.get("/search")
def search() -> ResponseReturnValue:
    results = run_search(brand().id, request.args.get("q", ""), g.role)
    return render_template("console/search.html", results=results)
