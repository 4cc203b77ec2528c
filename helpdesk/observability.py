"""What an operator sees: request ids that follow a message from webhook to worker, JSON logs,
and Prometheus metrics at /metrics."""

from __future__ import annotations

import json
import logging
import random
import time
from contextvars import ContextVar
from typing import Any

from amqp.exceptions import ChannelError
from flask import Flask, Response, current_app, g, has_app_context, request
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from prometheus_client.core import REGISTRY, GaugeMetricFamily
from sqlalchemy import func, select

from helpdesk.dm.models import Message
from helpdesk.extensions import db
from helpdesk.intake.models import EventStatus, WebhookEvent
from helpdesk.sla.models import ReminderKind, SlaReminder
from helpdesk.types import utcnow

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

REQUESTS = Counter(
    "helpdesk_http_requests_total", "HTTP requests answered", ["method", "endpoint", "status"]
)
LATENCY = Histogram(
    "helpdesk_http_request_seconds", "Time to answer a request", ["endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)  # fmt: skip
SECRET_KEYS = ("token", "password", "secret", "authorization", "access_token")


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the request id of the request or task that logged it."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if request_id := request_id_var.get():
            entry["request_id"] = request_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class RedactSecrets(logging.Filter):
    """Belt and braces: a log line that mentions a secret-looking key=value gets it masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        lowered = message.lower()
        if any(key in lowered for key in SECRET_KEYS):
            record.msg, record.args = _mask(message), ()
        return True


def _mask(text: str) -> str:
    import re

    return re.sub(
        r"(?i)(token|password|secret|authorization|access_token)([\"']?\s*[:=]\s*[\"']?)"
        r"(bearer\s+)?[^\s\"',&]+",
        r"\1\2\3[redacted]",
        text,
    )


class _Handler(logging.StreamHandler):
    """The handler this module installs: replaced, not duplicated, when a second app is created."""


def configure_logging(json_logs: bool) -> None:
    handler = _Handler()
    handler.setFormatter(
        JsonFormatter() if json_logs else logging.Formatter("%(levelname)s [%(name)s] %(message)s")
    )
    handler.addFilter(RedactSecrets())
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if not isinstance(h, _Handler)] + [handler]
    root.setLevel(logging.INFO)


class QueueCollector:
    """Intake lag, queue depth and delivery outcomes read at scrape time, so every web and
    worker process reports the same figures without shared memory."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def describe(self):
        """Names only: registering must not query a database that may not be migrated yet."""
        return [
            GaugeMetricFamily("helpdesk_intake_lag_seconds", ""),
            GaugeMetricFamily("helpdesk_outbound_messages", "", labels=["status"]),
            GaugeMetricFamily("helpdesk_sla_breaches", ""),
            GaugeMetricFamily("helpdesk_queue_depth", "", labels=["queue"]),
        ]

    def collect(self):
        app: Flask = self.app
        if has_app_context():
            # current_app is a proxy, which the stubs type as the Flask app it stands for.
            app = current_app._get_current_object()  # type: ignore[attr-defined]
        yield from self._collect(app)

    def _collect(self, app: Flask):
        with app.app_context():
            try:
                oldest = db.session.scalar(
                    select(func.min(WebhookEvent.received_at)).where(
                        WebhookEvent.status == EventStatus.PENDING
                    )
                )
                statuses = db.session.execute(
                    select(Message.status, func.count())
                    .where(Message.direction == "outbound")
                    .group_by(Message.status)
                ).all()
                breaches = db.session.scalar(
                    select(func.count())
                    .select_from(SlaReminder)
                    .where(SlaReminder.kind == ReminderKind.BREACH)
                )
            finally:
                db.session.remove()
        lag = GaugeMetricFamily(
            "helpdesk_intake_lag_seconds", "Age of the oldest webhook delivery not processed yet"
        )
        lag.add_metric([], (utcnow() - oldest).total_seconds() if oldest else 0.0)
        yield lag
        outcomes = GaugeMetricFamily(
            "helpdesk_outbound_messages", "Outbound messages by delivery status", labels=["status"]
        )
        for status, count in statuses:
            outcomes.add_metric([getattr(status, "value", str(status))], count)
        yield outcomes
        sla = GaugeMetricFamily("helpdesk_sla_breaches", "SLA breach reminders fired, all time")
        sla.add_metric([], breaches or 0)
        yield sla
        depth = GaugeMetricFamily(
            "helpdesk_queue_depth", "Tasks waiting in the broker", labels=["queue"]
        )
        for queue, waiting in self._queue_depths(app):
            depth.add_metric([queue], waiting)
        yield depth

    @staticmethod
    def _queue_depths(app: Flask) -> list[tuple[str, float]]:
        celery = app.extensions["celery"]
        names = [queue.name for queue in celery.conf.task_queues]
        try:
            with celery.connection_for_read() as connection:
                channel = connection.default_channel
                return [(name, QueueCollector._depth(channel, name)) for name in names]
        except Exception:  # the broker is down: no figure rather than a failed scrape
            return [(name, float("nan")) for name in names]

    @staticmethod
    def _depth(channel, name: str) -> float:
        try:
            return float(channel.queue_declare(name, passive=True).message_count)
        except ChannelError:  # never declared (no worker or sender used it yet): nothing waits
            return 0.0


def new_request_id() -> str:
    """32 hex digits, as uuid4().hex gave. An id follows a request through the logs and is no
    secret, so it comes from the process's pseudo-random generator (reseeded in every forked
    worker) rather than from os.urandom: a system call, which under load hands the interpreter
    lock to another thread and then waits to get it back."""
    return f"{random.getrandbits(128):032x}"


def request_id_of(environ: dict[str, Any]) -> str:
    """Every request has an id that its log lines and the work it hands on carry: the caller's
    X-Request-Id (at most 64 characters) if it gave one, else a new one. Read from the environ:
    no header object is built for it."""
    return environ.get("HTTP_X_REQUEST_ID", "")[:64] or new_request_id()


def _start() -> None:
    request_id = request_id_of(request.environ)
    state = g._get_current_object()  # one proxy lookup, not one per attribute
    state.request_id = request_id
    state.started = time.perf_counter()
    request_id_var.set(request_id)


# The labelled children of the request metrics, by their labels: prometheus_client's labels()
# validates and converts the values and takes a lock on every call, for the same few children.
_request_children: dict[tuple[str, str, int], Counter] = {}
_latency_children: dict[str, Histogram] = {}


def count_request(method: str, endpoint: str, status: int, seconds: float) -> None:
    """One answered request in the request metrics."""
    key = (method, endpoint, status)
    counter = _request_children.get(key)
    if counter is None:
        counter = _request_children.setdefault(key, REQUESTS.labels(*key))
    counter.inc()
    latency = _latency_children.get(endpoint)
    if latency is None:
        latency = _latency_children.setdefault(endpoint, LATENCY.labels(endpoint))
    latency.observe(seconds)


def _finish(response: Response) -> Response:
    state = g._get_current_object()
    rule = request.url_rule
    started = getattr(state, "started", None)
    count_request(
        request.method,
        rule.endpoint if rule is not None else "unmatched",
        response.status_code,
        time.perf_counter() - started if started is not None else 0.0,
    )
    response.headers["X-Request-Id"] = getattr(state, "request_id", "")
    return response


def init_observability(app: Flask) -> None:
    configure_logging(json_logs=app.config.get("JSON_LOGS", False))
    collector = QueueCollector(app)
    try:
        REGISTRY.register(collector)
    except ValueError:
        pass  # another app of this process (tests) registered its collector already

    app.before_request(_start)
    app.after_request(_finish)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(REGISTRY), mimetype=CONTENT_TYPE_LATEST)
