"""The floor of any Flask app: one route answering "ok", nothing else (no extensions, no hooks).

bench.intake serves it with gunicorn under the same settings as the helpdesk (workers, threads,
worker class) and loads both alike, so the helpdesk's figures read as a share of what Flask and
gunicorn alone manage on the same machine at the same moment.

    gunicorn -w 2 -k gthread --threads 8 bench.bare_app:app
"""

from __future__ import annotations

from flask import Flask

app = Flask(__name__)


@app.get("/")
def ok():
    return "ok", 200, {"Content-Type": "text/plain"}
