"""The lighter request path (issue 17, item 3): the webhook and /ping skip what only the console
needs (the cookie session, the signed-in agent) while keeping what every request owes: request
ids, metrics, security headers; and the console keeps its sessions and CSRF checks."""

from __future__ import annotations

from contextlib import contextmanager

from prometheus_client.core import REGISTRY
from sqlalchemy import event, func, select

from helpdesk.extensions import db
from helpdesk.intake.models import WebhookEvent
from tests.factories import AgentFactory, BrandFactory, member
from tests.helpers.console import signed_in
from tests.helpers.webhooks import post, text_delivery


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
