"""Celery wired the Flask way: every task runs inside the application context."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import Celery, Task
from celery.signals import setup_logging
from flask import Flask, has_app_context

from helpdesk.observability import configure_logging
from helpdesk.queueing import (
    PURGE_EXPIRED,
    REFRESH_INSTAGRAM_TOKENS,
    RESUME_BACKFILLS,
    SWEEP_MEDIA,
)

DAY_SECONDS = 24 * 60 * 60

TASK_MODULES = [
    "workers.tasks.assignment",
    "workers.tasks.automations",
    "workers.tasks.backfill",
    "workers.tasks.channels",
    "workers.tasks.csat",
    "workers.tasks.delivery",
    "workers.tasks.heartbeat",
    "workers.tasks.intake",
    "workers.tasks.media",
    "workers.tasks.metrics",
    "workers.tasks.outgoing",
    "workers.tasks.retention",
    "workers.tasks.sla",
    "workers.tasks.tickets",
    "workers.tasks.vanish",
]


def _beat_schedule(app: Flask) -> dict:
    every = {
        "heartbeat": ("workers.tasks.heartbeat.heartbeat", app.config["HEARTBEAT_SECONDS"]),
        "sweep-sla": ("workers.tasks.sla.sweep_sla", app.config["SLA_SWEEP_SECONDS"]),
        "purge-vanish-mode": ("workers.tasks.vanish.purge_vanish_messages", 60),
        "wake-snoozed": ("workers.tasks.tickets.wake_snoozed_tickets", 30),
        "release-scheduled": ("workers.tasks.tickets.release_scheduled_messages", 15),
        "assign-waiting": ("workers.tasks.assignment.assign_waiting_tickets", 60),
        "sweep-webhook-events": ("workers.tasks.intake.sweep_webhook_events", 5),
        "sweep-deliveries": ("workers.tasks.delivery.sweep_deliveries", 60),
        "sweep-metrics": ("workers.tasks.metrics.sweep_metrics", 60),
        "outgoing-webhooks": ("workers.tasks.outgoing.deliver_outgoing_webhooks", 10),
        "refresh-instagram-tokens": (REFRESH_INSTAGRAM_TOKENS, DAY_SECONDS),
        "resume-backfills": (RESUME_BACKFILLS, 60),
        "purge-expired": (PURGE_EXPIRED, DAY_SECONDS),
        "sweep-time-rules": ("workers.tasks.automations.sweep_time_rules", 60),
        "sweep-media-copies": (SWEEP_MEDIA, 60),
        "send-csat-surveys": ("workers.tasks.csat.send_due_surveys", 60),
    }
    return {
        name: {"task": task, "schedule": timedelta(seconds=seconds)}
        for name, (task, seconds) in every.items()
    }


def celery_init_app(app: Flask) -> Celery:
    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            if has_app_context():
                return self.run(*args, **kwargs)
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = Celery(app.name, task_cls=FlaskTask, include=TASK_MODULES)
    celery_app.config_from_object(app.config["CELERY"])
    celery_app.conf.beat_schedule = _beat_schedule(app)

    @setup_logging.connect(weak=False)
    def _logging(loglevel: int | str | None = None, **_kwargs) -> None:
        configure_logging(json_logs=app.config.get("JSON_LOGS", False))
        if loglevel:  # `--loglevel` of `celery worker` / `beat` (make run: WARNING)
            logging.getLogger().setLevel(loglevel)

    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app


def __getattr__(name: str):
    # `celery -A workers` looks up `workers.celery`; the app is built only when it is asked for.
    if name == "celery":
        from workers.app import celery  # builds the Flask app: only when a worker asks for it

        return celery
    raise AttributeError(name)
