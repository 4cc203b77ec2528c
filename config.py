"""Configuration read from the environment (names and defaults: docs/configuration.md)."""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path

from kombu import Queue

BASE_DIR = Path(__file__).resolve().parent
INSTANCE_DIR = Path(os.environ.get("HELPDESK_INSTANCE", BASE_DIR / "instance"))


def _secret_key() -> str:
    """A random key kept in instance/ so sessions survive restarts without configuration."""
    if key := os.environ.get("SECRET_KEY"):
        return key
    INSTANCE_DIR.mkdir(parents=True, exist_ok=True)
    path = INSTANCE_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def _sqlite_url(name: str) -> str:
    INSTANCE_DIR.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{INSTANCE_DIR / name}"


def _celery_config(redis_url: str | None) -> dict:
    if redis_url:
        broker, backend = redis_url, redis_url
    else:
        # An embedded broker on a SQLite file: a real worker and beat run without any server.
        broker = "sqla+" + _sqlite_url("celery-broker.db")
        backend = "db+" + _sqlite_url("celery-results.db")
    return {
        "broker_url": broker,
        "result_backend": backend,
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "broker_connection_retry_on_startup": True,
        # Replies have a queue of their own, so a burst of intake never delays them; a worker
        # started without -Q consumes both, and busy installs give delivery workers of their own.
        "task_queues": (Queue("celery"), Queue("delivery")),
        "task_routes": {"workers.tasks.delivery.*": {"queue": "delivery"}},
        # The SQLAlchemy transport hands these to create_engine: wait for SQLite's lock.
        "broker_transport_options": {} if redis_url else {"connect_args": {"timeout": 30}},
        "beat_schedule_filename": str(INSTANCE_DIR / "celerybeat-schedule"),
        "timezone": "UTC",
    }


class Config:
    SECRET_KEY = _secret_key()
    SQLALCHEMY_DATABASE_URI = os.environ.get("DATABASE_URL") or _sqlite_url("helpdesk.db")
    REDIS_URL = os.environ.get("REDIS_URL") or None
    INSTAGRAM_APP_SECRET = os.environ.get("INSTAGRAM_APP_SECRET", "")
    INSTAGRAM_VERIFY_TOKEN = os.environ.get("INSTAGRAM_VERIFY_TOKEN", "")
    GRAPH_API_BASE = os.environ.get("GRAPH_API_BASE", "https://graph.instagram.com/v25.0")
    GRAPH_API_TIMEOUT = float(os.environ.get("GRAPH_API_TIMEOUT", 10))
    TOKEN_ENCRYPTION_KEY = os.environ.get("TOKEN_ENCRYPTION_KEY") or None
    MAX_CONTENT_LENGTH = 1024 * 1024
    VANISH_PURGE_GRACE_SECONDS = int(os.environ.get("VANISH_PURGE_GRACE_SECONDS", 300))
    HEARTBEAT_SECONDS = float(os.environ.get("HEARTBEAT_SECONDS", 30))
    JSON_LOGS = os.environ.get("JSON_LOGS", "").lower() in ("1", "true", "yes")
    SLA_SWEEP_SECONDS = float(os.environ.get("SLA_SWEEP_SECONDS", 60))
    # Outgoing webhooks never reach loopback or private networks unless this is set.
    OUTGOING_WEBHOOKS_ALLOW_PRIVATE = os.environ.get(
        "OUTGOING_WEBHOOKS_ALLOW_PRIVATE", ""
    ).lower() in ("1", "true", "yes")
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    REMEMBER_COOKIE_HTTPONLY = True
    REMEMBER_COOKIE_SAMESITE = "Lax"
    REMEMBER_COOKIE_DURATION = timedelta(days=14)
    # Flask-Login drops the session when the client's address or browser changes.
    SESSION_PROTECTION = "strong"
    # Console sign-in throttling: this many failures within the window lock the email (or the
    # client address) for the window; several web processes share the count in the database.
    LOGIN_MAX_FAILURES_PER_EMAIL = int(os.environ.get("LOGIN_MAX_FAILURES_PER_EMAIL", 5))
    LOGIN_MAX_FAILURES_PER_IP = int(os.environ.get("LOGIN_MAX_FAILURES_PER_IP", 20))
    LOGIN_THROTTLE_WINDOW = timedelta(minutes=int(os.environ.get("LOGIN_THROTTLE_MINUTES", 15)))
    # Behind a reverse proxy, how many X-Forwarded-For hops to trust for the client address.
    PROXY_FIX_X_FOR = int(os.environ.get("PROXY_FIX_X_FOR", 0))
    # With Redis: how many worker processes may process stored webhook deliveries at once.
    INTAKE_LOOPS = int(os.environ.get("INTAKE_LOOPS", 2))
    # PostgreSQL: while webhook deliveries arrive together, the writer waits this long before each
    # commit so that more of them share it (0: never wait). A lone delivery never waits.
    INTAKE_GATHER_MS = max(0.0, float(os.environ.get("INTAKE_GATHER_MS", 3)))
    # Invitation and reset e-mails (smtp://user:pass@host:port); unset, the links are only shown.
    SMTP_URL = os.environ.get("SMTP_URL") or None
    MAIL_FROM = os.environ.get("MAIL_FROM") or None
    # The address people reach the helpdesk at, for links made without a request (the CLI).
    PUBLIC_BASE_URL = os.environ.get("PUBLIC_BASE_URL") or None
    # Instagram Login: the app's id (client_id), where the browser authorizes, where codes turn
    # into tokens. The demo points both bases at the Graph API simulator.
    INSTAGRAM_APP_ID = os.environ.get("INSTAGRAM_APP_ID", "")
    INSTAGRAM_AUTH_BASE = os.environ.get("INSTAGRAM_AUTH_BASE", "https://www.instagram.com")
    INSTAGRAM_TOKEN_BASE = os.environ.get("INSTAGRAM_TOKEN_BASE", "https://api.instagram.com")
    # Backfill of a newly connected account's history: Instagram allows about 2 calls a second
    # per account; a rate-limited call waits BACKFILL_RETRY_SECONDS (doubling) up to
    # BACKFILL_RETRIES times; a worker that stops renewing its claim for BACKFILL_LEASE_SECONDS
    # is taken for dead and another resumes its backfill.
    BACKFILL_CALLS_PER_SECOND = float(os.environ.get("BACKFILL_CALLS_PER_SECOND", 2))
    BACKFILL_RETRY_SECONDS = float(os.environ.get("BACKFILL_RETRY_SECONDS", 30))
    BACKFILL_RETRIES = int(os.environ.get("BACKFILL_RETRIES", 5))
    BACKFILL_LEASE_SECONDS = float(os.environ.get("BACKFILL_LEASE_SECONDS", 120))
    # Where media copies and agents' uploads live: file://<folder> (relative to the project) or
    # s3://bucket/prefix (credentials and region from the standard AWS variables; an
    # S3-compatible store through AWS_ENDPOINT_URL).
    MEDIA_STORAGE = os.environ.get("MEDIA_STORAGE", "file://instance/media")
    # Media downloads may reach loopback and private addresses (tests and the demo only).
    MEDIA_FETCH_ALLOW_PRIVATE = os.environ.get("MEDIA_FETCH_ALLOW_PRIVATE", "") == "1"
    MEDIA_MAX_BYTES = int(os.environ.get("MEDIA_MAX_BYTES", 25 * 1024 * 1024))
    CELERY = _celery_config(REDIS_URL)


class ProductionConfig(Config):
    JSON_LOGS = True
    SESSION_COOKIE_SECURE = True
    REMEMBER_COOKIE_SECURE = True


class TestConfig(Config):
    TESTING = True
    WTF_CSRF_ENABLED = True
    INSTAGRAM_APP_SECRET = "test-app-secret"
    INSTAGRAM_VERIFY_TOKEN = "test-verify-token"
    # The simulator's app id; tests point the two bases at the simulator they start.
    INSTAGRAM_APP_ID = "555000111222333"
