"""The DM helpdesk: a Flask application factory."""

from __future__ import annotations

from typing import Any

from flask import Flask


def create_app(overrides: dict[str, Any] | None = None) -> Flask:
    import os

    from config import INSTANCE_DIR, Config, ProductionConfig, TestConfig
    from helpdesk import models  # noqa: F401  (every model, for Alembic and relationships)
    from helpdesk.assignment.service import subscribe as subscribe_assignment
    from helpdesk.automations.engine import subscribe as subscribe_automations
    from helpdesk.channels.backfill import subscribe as subscribe_backfill
    from helpdesk.cli import register_cli
    from helpdesk.csat.survey import subscribe as subscribe_csat
    from helpdesk.database import configure_sqlite
    from helpdesk.delivery.outage import subscribe as subscribe_outage
    from helpdesk.extensions import db, migrate
    from helpdesk.intake.writer import DeliveryWriter
    from helpdesk.observability import init_observability
    from helpdesk.sla.service import subscribe as subscribe_sla
    from helpdesk.web import register_blueprints
    from helpdesk.web.auth import init_auth
    from helpdesk.web.request_path import HelpdeskFlask
    from helpdesk.web.security_headers import init_security_headers
    from helpdesk.web.webhooks.routes import init_webhook_intake
    from workers import celery_init_app

    app = HelpdeskFlask(  # Flask, with less work per request (helpdesk.web.request_path)
        __name__,
        instance_path=str(INSTANCE_DIR),
        template_folder=os.path.join(os.path.dirname(__file__), os.pardir, "templates"),
    )
    config = {"production": ProductionConfig, "test": TestConfig}.get(
        os.environ.get("HELPDESK_ENV", ""), Config
    )
    app.config.from_object(config)
    if overrides:
        app.config.update(overrides)
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {"connect_args": {"timeout": 30}})
    else:
        app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {"pool_pre_ping": True})

    subscribe_sla()  # services that build on tickets hear of its changes (helpdesk.hooks)
    subscribe_assignment()
    subscribe_backfill()  # a newly connected account's history is read by a worker
    subscribe_outage()  # replies wait while a channel needs a reconnect, and resume after it
    subscribe_automations()  # rules act on what the services announce (helpdesk.automations)
    subscribe_csat()  # a resolved ticket schedules its satisfaction survey
    db.init_app(app)
    app.extensions["delivery_writer"] = DeliveryWriter(
        app, gather_seconds=app.config.get("INTAKE_GATHER_MS", 0) / 1000
    )
    with app.app_context():
        configure_sqlite(db.engine)
    migrate.init_app(
        app, db, directory=os.path.join(os.path.dirname(__file__), os.pardir, "migrations")
    )
    celery_init_app(app)
    init_auth(app)  # sign-in and CSRF first: blueprints (the API) exempt themselves from CSRF
    register_blueprints(app)
    register_cli(app)
    init_observability(app)
    init_security_headers(app)
    init_webhook_intake(app)  # the webhook's POST, answered below Flask
    return app
