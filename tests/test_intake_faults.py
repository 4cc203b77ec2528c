"""A 200 means stored, whatever the broker's state: Redis stopped during intake loses nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from helpdesk import create_app
from helpdesk.channels.service import connect_channel
from helpdesk.dm.models import Message
from helpdesk.extensions import db
from helpdesk.intake.models import EventStatus, WebhookEvent
from helpdesk.queueing import reset as reset_enqueue_pause
from tests.conftest import DATABASE_URL, fresh, wait_for
from tests.factories import BrandFactory
from tests.helpers.webhooks import ACCOUNT, sign, text_delivery

pytestmark = pytest.mark.worker


def test_deliveries_posted_while_redis_is_down_are_stored_and_processed_when_it_is_back(
    app, own_redis, celery_process, worker_env
):
    broker = f"redis://127.0.0.1:{own_redis.port}/0"
    intake_app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": DATABASE_URL,
            "CELERY": {**app.config["CELERY"], "broker_url": broker, "result_backend": broker},
        }
    )
    connect_channel(BrandFactory(), "instagram", ACCOUNT, "token")
    db.session.commit()
    try:
        own_redis.stop()
        client = intake_app.test_client()
        for n in range(200):
            raw = text_delivery(n, "redis-down-")
            response = client.post(
                "/webhooks/instagram", data=raw, headers={"X-Hub-Signature-256": sign(raw)}
            )
            assert response.status_code == 200
        stored = fresh(
            lambda: db.session.scalar(
                select(func.count())
                .select_from(WebhookEvent)
                .where(WebhookEvent.status == EventStatus.PENDING)
            )
        )
        assert stored == 200

        own_redis.start()
        reset_enqueue_pause()
        worker_env.update(REDIS_URL=broker)
        celery_process("worker", "--pool=solo", "--without-mingle", "--without-gossip")
        from workers.tasks.intake import sweep_webhook_events

        with intake_app.app_context():
            sweep_webhook_events.apply_async(kwargs={"older_than_seconds": 0})
        processed = wait_for(
            lambda: db.session.scalar(select(func.count()).select_from(Message)) == 200,
            timeout=90,
        )
        assert processed, "the sweep did not process every stored delivery"
        assert (
            fresh(
                lambda: db.session.scalar(
                    select(func.count())
                    .select_from(WebhookEvent)
                    .where(WebhookEvent.status == EventStatus.PROCESSED)
                )
            )
            == 200
        )
    finally:
        app.extensions["celery"].set_default()
