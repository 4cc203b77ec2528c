"""Group commit of webhook deliveries on PostgreSQL: many requests, one commit, nothing lost."""

from __future__ import annotations

import json
import threading

import psycopg
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from helpdesk.channels.service import connect_channel
from helpdesk.dm.models import Message
from helpdesk.extensions import db
from helpdesk.intake.models import EventStatus, WebhookEvent
from tests.conftest import DATABASE_URL, fresh
from tests.factories import BrandFactory
from tests.helpers.webhooks import ACCOUNT, post, process_all

pytestmark = pytest.mark.skipif(
    not DATABASE_URL.startswith("postgresql"),
    reason="the group-commit writer is used on PostgreSQL only (SQLite commits per request)",
)


def body(n: int) -> bytes:
    event = {
        "sender": {"id": f"9100000000{n % 7:04d}"},
        "recipient": {"id": ACCOUNT},
        "timestamp": 1763800000000 + n,
        "message": {"mid": f"writer-{n}", "text": f"message {n}"},
    }
    entry = {"id": ACCOUNT, "time": 1763800000, "messaging": [event]}
    return json.dumps({"object": "instagram", "entry": [entry]}).encode()


def admin_connection() -> psycopg.Connection:
    url = make_url(DATABASE_URL).set(drivername="postgresql")
    return psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)


def stored_count() -> int:
    return fresh(lambda: db.session.scalar(select(func.count()).select_from(WebhookEvent)))


@pytest.fixture
def channel():
    connect_channel(BrandFactory(), "instagram", ACCOUNT, "page-token")
    db.session.commit()


def post_concurrently(app, senders: int = 12, each: int = 10) -> list[int]:
    """Deliveries 0 .. senders * each - 1, posted by `senders` threads at once; the statuses."""
    statuses: list[int] = []
    lock = threading.Lock()

    def send(start: int) -> None:
        client = app.test_client()
        for n in range(start, start + each):
            response = post(client, body(n))
            with lock:
                statuses.append(response.status_code)

    threads = [threading.Thread(target=send, args=(k * each,)) for k in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def test_concurrent_deliveries_are_each_stored_once_with_their_request_id(app, channel):
    assert post_concurrently(app) == [200] * 120
    rows = fresh(lambda: db.session.scalars(select(WebhookEvent)).all())
    assert len(rows) == 120
    assert {row.status for row in rows} == {EventStatus.PENDING}
    assert all(row.account_ids == [ACCOUNT] and row.request_id for row in rows)
    assert sorted(json.loads(row.body)["entry"][0]["messaging"][0]["message"]["mid"]
                  for row in rows) == sorted(f"writer-{n}" for n in range(120))  # fmt: skip
    process_all()
    assert fresh(lambda: db.session.scalar(select(func.count()).select_from(Message))) == 120


def test_a_delivery_the_database_cannot_take_in_time_answers_503_and_a_retry_doubles_nothing(
    app, client, channel
):
    app.extensions["delivery_writer"].wait_seconds = 1.0
    db.session.rollback()
    with admin_connection() as admin:
        admin.execute("BEGIN")
        admin.execute("LOCK TABLE webhook_events IN ACCESS EXCLUSIVE MODE")
        response = post(client, body(1))
        assert response.status_code == 503
        assert response.get_json()["error"]["code"] == "unavailable"
        admin.execute("ROLLBACK")  # the writer's INSERT goes through now, late

    app.extensions["delivery_writer"].wait_seconds = 10.0
    assert post(client, body(1)).status_code == 200  # Meta retries after a 5xx
    assert stored_count() == 2
    process_all()
    messages = fresh(lambda: db.session.scalars(select(Message.mid)).all())
    assert messages == ["writer-1"]


def test_the_writer_reconnects_when_the_server_dropped_its_connection(app, client, channel):
    assert post(client, body(1)).status_code == 200
    db.session.remove()
    with admin_connection() as admin:
        # Every other connection to the database, the writer's (idle, kept open) among them.
        killed = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    assert killed

    assert post(client, body(2)).status_code == 200
    assert stored_count() == 2


def test_deliveries_arriving_together_share_commits(app, channel, monkeypatch):
    writer = app.extensions["delivery_writer"]
    monkeypatch.setattr(writer, "gather_seconds", 0.05)
    batches: list[int] = []
    write = writer._write

    def counted(engine, connection, batch):
        batches.append(len(batch))
        return write(engine, connection, batch)

    monkeypatch.setattr(writer, "_write", counted)
    assert post_concurrently(app) == [200] * 120
    assert sum(batches) == 120 and stored_count() == 120
    assert len(batches) < 60, f"{len(batches)} commits for 120 deliveries: {batches}"


def test_a_lone_delivery_is_not_held_back_to_gather_others(app, client, channel, monkeypatch):
    """Were a delivery that arrives alone kept back for the gathering pause (here longer than a
    request may wait), it would answer 503."""
    writer = app.extensions["delivery_writer"]
    monkeypatch.setattr(writer, "gather_seconds", 30.0)
    monkeypatch.setattr(writer, "wait_seconds", 5.0)
    assert [post(client, body(n)).status_code for n in range(3)] == [200, 200, 200]
    assert stored_count() == 3
