from flask import current_app, jsonify, redirect, render_template, url_for
from flask_login import current_user

from helpdesk.database import check_database
from helpdesk.heartbeat import last_beat
from helpdesk.web.main import bp


@bp.get("/")
def home():
    if current_user.is_authenticated:
        return redirect(url_for("console.inbox"))
    # Anonymous visitors learn nothing about the tenants: only whether the workers are alive.
    return render_template("main/home.html", beat=last_beat())


@bp.get("/ping")
def ping():
    """No database, no template: the floor any request of this app pays (used by benchmarks)."""
    return "pong", 200, {"Content-Type": "text/plain"}


@bp.get("/healthz")
def healthz():
    try:
        check_database()
    except Exception as exc:  # any failure to reach the database means unhealthy
        current_app.logger.warning("health check failed: %s", type(exc).__name__)
        return jsonify(status="unavailable", database="down"), 503
    return jsonify(status="ok", database="up")


@bp.get("/readyz")
def readyz():
    checks = {}
    try:
        check_database()
        checks["database"] = "up"
    except Exception:
        checks["database"] = "down"
    try:
        celery = current_app.extensions["celery"]
        with celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        checks["broker"] = "up"
    except Exception:
        checks["broker"] = "down"
    ok = all(v == "up" for v in checks.values())
    return jsonify(status="ok" if ok else "unavailable", **checks), 200 if ok else 503
