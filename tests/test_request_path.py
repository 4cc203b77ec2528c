"""The lighter request path (issue 17, item 3): the webhook and /ping skip what only the console
needs (the cookie session, the signed-in agent) while keeping what every request owes: request
ids, metrics, security headers; and the console keeps its sessions and CSRF checks."""

from __future__ import annotations

import logging
import multiprocessing
from contextlib import contextmanager

from flask import request_started
from prometheus_client.core import REGISTRY
from sqlalchemy import event, func, select

from helpdesk.extensions import db
from helpdesk.intake import service as intake
from helpdesk.intake.models import WebhookEvent
from helpdesk.observability import new_request_id, request_id_var
from helpdesk.web.webhooks.routes import WebhookIntake
from tests.factories import AgentFactory, BrandFactory, member
from tests.helpers.console import signed_in
from tests.helpers.webhooks import post, sign, text_delivery


@contextmanager
def statements():
    """Every SQL statement the app runs meanwhile (observed on the engine, nothing replaced)."""
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


def agent_client(client):
    brand = BrandFactory()
    agent = AgentFactory()
    member(agent, brand)
    db.session.commit()
    return signed_in(client, agent)


def requests_counted(method: str, endpoint: str, status: int) -> float:
    labels = {"method": method, "endpoint": endpoint, "status": str(status)}
    return REGISTRY.get_sample_value("helpdesk_http_requests_total", labels) or 0.0


def test_a_webhook_with_an_agents_cookie_loads_no_agent_and_sets_no_cookie(client, webhook_channel):
    """The console's cookie rides along (a browser on the same site): the webhook neither reads
    it nor asks Flask-Login's user loader, even where an error answer (JSON) would have asked
    for the signed-in user to decide on caching."""
    agent_client(client)
    with statements() as seen:
        refused = post(client, text_delivery(1, "path-"), signature="sha256=" + "0" * 64)
        stored = post(client, text_delivery(2, "path-"))
    assert refused.status_code == 401 and stored.status_code == 200
    assert not [s for s in seen if "agents" in s], seen
    for response in (refused, stored):
        assert "Set-Cookie" not in response.headers
        assert "Cookie" not in response.headers.get("Vary", "")
        assert len(response.headers["X-Request-Id"]) == 32
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(WebhookEvent)) == 1


def test_ping_runs_no_query_and_sets_no_cookie_but_counts_and_carries_its_request_id(client):
    before = requests_counted("GET", "main.ping", 200)
    with statements() as seen:
        response = client.get("/ping", headers={"X-Request-Id": "given-id"})
    assert response.status_code == 200 and seen == []
    assert "Set-Cookie" not in response.headers
    assert response.headers["X-Request-Id"] == "given-id"
    assert response.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert requests_counted("GET", "main.ping", 200) == before + 1


def test_webhook_deliveries_are_counted_by_status(client, webhook_channel):
    ok, refused = (requests_counted("POST", "webhooks.receive", s) for s in (200, 401))
    assert post(client, text_delivery(3, "path-")).status_code == 200
    assert post(client, text_delivery(4, "path-"), signature="sha256=x").status_code == 401
    assert requests_counted("POST", "webhooks.receive", 200) == ok + 1
    assert requests_counted("POST", "webhooks.receive", 401) == refused + 1


def test_the_console_keeps_its_session_and_refuses_a_form_without_its_csrf_token(client):
    agent_client(client)
    inbox = client.get("/inbox")
    assert inbox.status_code == 200  # the session cookie still signs the agent in
    assert inbox.headers["Cache-Control"] == "no-store"
    refused = client.post("/logout", data={})
    assert refused.status_code == 400
    assert client.get("/inbox").status_code == 200  # still signed in: the POST changed nothing


def test_nul_characters_are_still_refused_in_query_and_form(client):
    """The check now parses only what is there (a query string, a form body): still refused."""
    assert client.get("/login?next=%00").status_code == 400
    assert client.post("/login", data={"email": "a\x00b", "password": "x"}).status_code == 400


@contextmanager
def flask_requests(app):
    """The paths of the requests Flask itself dispatched meanwhile (its request_started signal)."""
    seen: list[str] = []

    def record(sender, **extra):
        from flask import request

        seen.append(request.path)

    request_started.connect(record, app)
    try:
        yield seen
    finally:
        request_started.disconnect(record, app)


@contextmanager
def without_intake_middleware(app):
    """The app as Flask alone serves it: the webhook's middleware taken out of the WSGI stack."""
    middleware = app.wsgi_app
    assert isinstance(middleware, WebhookIntake)
    app.wsgi_app = middleware.wsgi_app
    try:
        yield
    finally:
        app.wsgi_app = middleware


def stored_count() -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(WebhookEvent))


def test_a_webhook_post_is_answered_below_flask_and_everything_else_by_flask(
    app, client, webhook_channel
):
    with flask_requests(app) as dispatched:
        stored = post(client, text_delivery(5, "path-"), signature=None)
        refused = post(client, text_delivery(6, "path-"), signature="sha256=" + "0" * 64)
        handshake = client.get("/webhooks/instagram?hub.mode=subscribe")
        other_method = client.put("/webhooks/instagram", data=b"{}")
        client.get("/ping")
    assert dispatched == ["/webhooks/instagram", "/webhooks/instagram", "/ping"]
    assert (stored.status_code, stored.get_data(), stored.mimetype) == (
        200, b"EVENT_RECEIVED", "text/plain",
    )  # fmt: skip
    assert refused.status_code == 401 and refused.json["error"]["code"] == "bad_signature"
    assert handshake.status_code == 403
    assert other_method.status_code == 405 and "POST" in other_method.headers["Allow"]
    assert stored_count() == 1


def test_the_flask_route_answers_as_the_middleware_does(app, client, webhook_channel):
    """Where the middleware is not in front (an app mounted another way), the route stores and
    refuses alike, through the same function."""
    answers = []
    for wrapped in (False, True):
        with without_intake_middleware(app) if wrapped else contextmanager(lambda: (yield))():
            ok = post(client, text_delivery(7 if wrapped else 8, "path-"))
            bad = post(client, text_delivery(9, "path-"), signature="sha256=x")
            not_json = post(client, b"[1,")
        answers.append(
            [(r.status_code, r.mimetype, r.get_json(silent=True)) for r in (ok, bad, not_json)]
            + [sorted(k for k in ok.headers.keys() if k.startswith(("X-", "Content-S")))]
        )
    assert answers[0] == answers[1], answers
    assert stored_count() == 2


class _RequestIds(logging.Handler):
    """The request id in force when each record was logged."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str | None] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.ids.append(request_id_var.get())


def test_a_failure_in_the_webhook_is_logged_with_its_request_id_and_answered_as_json_500(
    client, webhook_channel, monkeypatch
):
    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(intake, "store_delivery", broken)
    handler = _RequestIds()
    logger = logging.getLogger("helpdesk.web.webhooks.routes")
    logger.addHandler(handler)
    outer = request_id_var.set("outer")
    try:
        response = client.post(
            "/webhooks/instagram",
            data=(raw := text_delivery(10, "path-")),
            headers={"X-Hub-Signature-256": sign(raw), "X-Request-Id": "req-on-fire"},
        )
        after = request_id_var.get()
    finally:
        request_id_var.reset(outer)
        logger.removeHandler(handler)
    assert response.status_code == 500
    assert response.json["error"]["code"] == "internal_error"
    assert "disk on fire" not in response.get_data(as_text=True)
    assert response.headers["X-Request-Id"] == "req-on-fire"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert handler.ids == ["req-on-fire"]
    assert after == "outer"  # the thread's next log lines carry no stale id
    assert stored_count() == 0


def _child_request_id(pipe) -> None:
    pipe.send(new_request_id())


def test_request_ids_differ_between_forked_workers():
    """Ids come from the process's pseudo-random generator: a forked worker (gunicorn's) must
    not repeat its parent's sequence."""
    parent_end, child_end = multiprocessing.Pipe()
    child = multiprocessing.get_context("fork").Process(target=_child_request_id, args=(child_end,))
    child.start()
    from_child = parent_end.recv()
    child.join()
    assert len(from_child) == 32 and int(from_child, 16) >= 0
    assert from_child != new_request_id()
