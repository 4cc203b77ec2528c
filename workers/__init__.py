"""Celery wired the Flask way: every task runs inside the application context."""

from __future__ import annotations

from datetime import timedelta

from celery import Celery, Task
from flask import Flask, has_app_context

TASK_MODULES = ["workers.tasks.heartbeat", "workers.tasks.vanish", "workers.tasks.sla"]


def celery_init_app(app: Flask) -> Celery:
    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            if has_app_context():
                return self.run(*args, **kwargs)
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = Celery(app.name, task_cls=FlaskTask, include=TASK_MODULES)
    celery_app.config_from_object(app.config["CELERY"])
    celery_app.conf.beat_schedule = {
        "heartbeat": {
            "task": "workers.tasks.heartbeat.heartbeat",
            "schedule": timedelta(seconds=app.config["HEARTBEAT_SECONDS"]),
        },
        "purge-vanish-mode": {
            "task": "workers.tasks.vanish.purge_vanish_messages",
            "schedule": timedelta(minutes=1),
        },
        "sweep-sla": {
            "task": "workers.tasks.sla.sweep_sla",
            "schedule": timedelta(seconds=app.config["SLA_SWEEP_SECONDS"]),
        },
    }
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app


def __getattr__(name: str):
    # `celery -A workers` looks up `workers.celery`; the app is built only when it is asked for.
    if name == "celery":
        from workers.app import celery

        return celery
    raise AttributeError(name)
