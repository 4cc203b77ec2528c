"""The operator's view: health, readiness, request ids, JSON logs, Prometheus metrics."""

from __future__ import annotations

import json
import logging

from helpdesk.observability import JsonFormatter, RedactSecrets, request_id_var
from tests.conftest import drain_broker


def test_healthz_answers_when_the_database_does(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json["database"] == "up"


def test_readyz_checks_database_and_broker(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "database": "up", "broker": "up"}


def test_every_response_carries_a_request_id_and_keeps_a_given_one(client):
    assert len(client.get("/ping").headers["X-Request-Id"]) == 32
    assert (
        client.get("/ping", headers={"X-Request-Id": "abc123"}).headers["X-Request-Id"] == "abc123"
    )


def test_metrics_expose_requests_intake_lag_queue_depth_deliveries_and_breaches(client):
    client.get("/ping")
    text = client.get("/metrics").get_data(as_text=True)
    for name in (
        "helpdesk_http_requests_total",
        "helpdesk_http_request_seconds",
        "helpdesk_intake_lag_seconds",
        "helpdesk_queue_depth",
        "helpdesk_outbound_messages",
        "helpdesk_sla_breaches",
    ):
        assert name in text


def test_queue_depth_counts_each_queue_and_a_queue_never_used_as_empty(app, client):
    drain_broker(app)
    app.extensions["celery"].send_task("workers.tasks.delivery.sweep_deliveries")
    try:
        text = client.get("/metrics").get_data(as_text=True)
    finally:
        drain_broker(app)
    assert 'helpdesk_queue_depth{queue="delivery"} 1.0' in text
    assert 'helpdesk_queue_depth{queue="celery"} 0.0' in text


def _format(message: str, *args) -> dict:
    record = logging.LogRecord("helpdesk.test", logging.INFO, __file__, 1, message, args, None)
    RedactSecrets().filter(record)
    return json.loads(JsonFormatter().format(record))


def test_json_logs_carry_the_request_id():
    token = request_id_var.set("req-42")
    try:
        entry = _format("stored delivery %s", 7)
    finally:
        request_id_var.reset(token)
    assert entry["message"] == "stored delivery 7" and entry["request_id"] == "req-42"


def test_secrets_are_masked_in_logs():
    entry = _format("calling graph with access_token=EAAGabc123 and Authorization: Bearer xyz")
    assert "EAAGabc123" not in entry["message"] and "xyz" not in entry["message"]
    assert "[redacted]" in entry["message"]
