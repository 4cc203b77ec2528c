"""Retention: a brand's content older than its retention period is purged every day, as an erase
would purge it; fresher content, tickets and metric figures stay, and other brands are left
alone."""

from __future__ import annotations

import json
from datetime import date, timedelta

from sqlalchemy import func, select, update

from helpdesk import crypto
from helpdesk.audit.models import AuditEvent
from helpdesk.brands.models import Brand
from helpdesk.dm.models import Conversation, Message, MessageEdit, Reaction
from helpdesk.extensions import db
from helpdesk.idempotency.models import IdempotencyKey
from helpdesk.intake.models import PendingAction, WebhookEvent
from helpdesk.live.models import LiveEvent
from helpdesk.media.store import media_store
from helpdesk.metrics.summary import summary
from helpdesk.notifications.models import Notification
from helpdesk.outgoing.models import WebhookDelivery, WebhookSubscription
from helpdesk.privacy import retention
from helpdesk.tickets import notes
from helpdesk.tickets.models import Note, Ticket, TicketEvent
from helpdesk.types import utcnow
from tests.factories import AgentFactory, member
from tests.helpers import webhooks as hooks
from tests.helpers.console import post, signed_in
from tests.helpers.media import empty, scan_store, store_copies
from tests.helpers.webhooks import ACCOUNT
from tests.helpers.world import World, receive
from tests.test_data_deletion import _event, deliver, scan

PERSON = "6120000000000001"
OLD_MS = 1763800000000  # November 2025: more than 30 days before any run of these tests

OLD_TEXT = "Parcel RTOLD7731 never reached 221B Baker Street"
OLD_EDITED = "Parcel RTEDIT8842 never reached 221C Baker Street"
OLD_PHOTO = "https://lookaside.example.com/ig_messaging_cdn/?asset_id=RTPHOTO5521"
OLD_REPLY = "Dear customer, parcel RTREPLY6610 is on its way"
OLD_NOTE = "Carrier says RTNOTE4410 was lost"
OLD_LIVE = "live RTLIVE3301"
OLD_CACHED = "cached RTCACHE2201"
OLD = ("RTOLD7731", "RTEDIT8842", "RTPHOTO5521", "RTREPLY6610", "RTNOTE4410", "RTLIVE3301",
       "RTCACHE2201")  # fmt: skip
FRESH_TEXT = "Fresh question RTFRESH1001 about a refund"
FRESH_NOTE = "Refund RTFRESHNOTE1002 approved"
FRESH_LIVE = "live RTFRESHLIVE1003"
FRESH = ("RTFRESH1001", "RTFRESHNOTE1002", "RTFRESHLIVE1003")


def _backdate_everything(days: int) -> None:
    """Rows written by the test so far were written 'now': move them into the past."""
    then = utcnow() - timedelta(days=days)
    for model, column in (
        (WebhookEvent, WebhookEvent.received_at),
        (Note, Note.created_at),
        (Notification, Notification.created_at),
        (LiveEvent, LiveEvent.created_at),
        (WebhookDelivery, WebhookDelivery.created_at),
        (IdempotencyKey, IdempotencyKey.created_at),
        (PendingAction, PendingAction.created_at),
        (Message, Message.created_at),
    ):
        db.session.execute(update(model).values({column.key: then}))
    db.session.commit()


def _plant(retention_days: int | None = 30):
    channel = hooks.connect_example_channel()
    brand = db.session.get(Brand, channel.brand_id)
    brand.retention_days = retention_days
    agent, colleague = AgentFactory(name="Ann Agent"), AgentFactory(name="Bob Colleague")
    member(agent, brand)
    member(colleague, brand)
    db.session.add(WebhookSubscription(brand_id=brand.id, url="https://hooks.example.com/in",
                                       events=["message.created"],
                                       secret_encrypted=crypto.encrypt("s")))  # fmt: skip
    db.session.commit()
    mid = "old-mid-1"
    deliver(
        _event(PERSON, ACCOUNT, OLD_MS, message={"mid": mid, "text": OLD_TEXT}),
        _event(PERSON, ACCOUNT, OLD_MS + 1000,
               message={"mid": "old-photo", "attachments": [{"type": "image",
                                                             "payload": {"url": OLD_PHOTO}}]}),
        _event(PERSON, ACCOUNT, OLD_MS + 2000,
               message_edit={"mid": mid, "text": OLD_EDITED, "num_edit": 1}),
        _event(PERSON, ACCOUNT, OLD_MS + 3000,
               reaction={"mid": mid, "action": "react", "reaction": "love", "emoji": "❤️"}),
        _event(PERSON, ACCOUNT, OLD_MS + 4000,
               reaction={"mid": "never-arrives", "action": "react", "reaction": "love"}),
        _event(ACCOUNT, PERSON, OLD_MS + 5000,
               message={"mid": "old-echo", "text": OLD_REPLY, "is_echo": True}),
    )  # fmt: skip
    ticket = db.session.scalar(
        select(Ticket).join(Message, Message.ticket_id == Ticket.id).where(Message.mid == mid)
    )
    notes.add_note(ticket, agent, f"@{notes.email_handle(colleague)} {OLD_NOTE}")
    db.session.add(LiveEvent(brand_id=brand.id, kind="message", data={"text": OLD_LIVE}))
    db.session.add(IdempotencyKey(brand_id=brand.id, scope="messages", key="k-old",
                                  fingerprint="f", status=201,
                                  body=json.dumps({"text": OLD_CACHED})))  # fmt: skip
    db.session.commit()
    _backdate_everything(days=400)

    fresh_ms = int(utcnow().timestamp() * 1000)
    deliver(_event(PERSON, ACCOUNT, fresh_ms, message={"mid": "fresh-1", "text": FRESH_TEXT}))
    ticket = db.session.scalar(
        select(Ticket).join(Message, Message.ticket_id == Ticket.id).where(Message.mid == "fresh-1")
    )
    notes.add_note(ticket, agent, FRESH_NOTE)
    db.session.add(LiveEvent(brand_id=brand.id, kind="message", data={"text": FRESH_LIVE}))
    db.session.commit()
    return brand


def _tickets():
    db.session.rollback()
    return [
        (t.id, t.status, t.opened_at, t.resolved_at, t.first_response_at)
        for t in db.session.scalars(select(Ticket).order_by(Ticket.id))
    ] + [(e.id, e.kind, e.data) for e in db.session.scalars(select(TicketEvent))]


def _figures(brand_id: int) -> dict:
    db.session.rollback()
    brand = db.session.get(Brand, brand_id)
    return summary(brand, date(2025, 1, 1), date.today() + timedelta(days=1))


def test_retention_purges_old_content_everywhere_and_keeps_fresh_content_tickets_and_figures():
    brand = _plant(retention_days=30)
    empty(media_store())
    keys = store_copies("RTPHOTO5521")  # the old photo, copied into the media store
    assert keys and scan_store(media_store(), OLD)
    planted = {hit.split(": ", 1)[0] for hit in scan(OLD)}
    assert {"messages", "message_edits", "webhook_events", "notes", "notifications",
            "webhook_deliveries", "live_events", "idempotency_keys",
            "media_objects"} <= planted  # fmt: skip
    assert db.session.scalar(select(func.count()).select_from(Reaction)) == 1
    assert db.session.scalar(select(func.count()).select_from(PendingAction)) == 1
    tickets, figures = _tickets(), _figures(brand.id)
    messages = db.session.scalar(select(func.count()).select_from(Message))

    (outcome,) = retention.purge_expired()

    assert scan(OLD) == []
    assert scan_store(media_store(), OLD, keys) == [], "no copy, thumbnail or key left"
    assert {s for s in FRESH if scan([s])} == set(FRESH), "fresh content stays"
    assert _tickets() == tickets
    assert _figures(brand.id) == figures
    assert db.session.scalar(select(func.count()).select_from(Message)) == messages
    assert db.session.scalar(select(func.count()).select_from(Reaction)) == 0
    assert db.session.scalar(select(func.count()).select_from(PendingAction)) == 0
    assert db.session.scalar(select(func.count()).select_from(MessageEdit)) == 1  # text gone
    purged = outcome.purged
    assert (purged.messages, purged.edits, purged.reactions, purged.notes) == (3, 1, 1, 1)
    assert (purged.raw_deliveries, purged.pending_actions, purged.cached_answers) == (1, 1, 1)
    assert purged.media_files == 1
    assert purged.live_events >= 1 and purged.outgoing_deliveries >= 1
    old = db.session.scalar(select(Message).where(Message.mid == "old-mid-1"))
    assert old.purged_at is not None and old.text is None and old.attachments == []
    fresh = db.session.scalar(select(Message).where(Message.mid == "fresh-1"))
    assert fresh.purged_at is None and fresh.text == FRESH_TEXT
    assert db.session.scalars(select(Note.body).order_by(Note.id)).all() == [
        "[expired]",
        FRESH_NOTE,
    ]
    (notice,) = db.session.scalars(select(Notification.body)).all()
    assert notice.startswith("Ann Agent mentioned you on ticket #") and notice.endswith(
        ": [expired]"
    )
    deliveries = db.session.scalars(select(WebhookDelivery.payload)).all()
    assert [d["text"] for d in deliveries].count(FRESH_TEXT) == 1
    (audit,) = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "brand.retention_purged")
    ).all()
    assert audit.brand_id == brand.id and audit.target_id == brand.id
    assert audit.changes["purged"][1]["messages"] == 3
    assert not [s for s in OLD if s.lower() in repr(audit.__dict__).lower()]

    # A second run finds nothing new, and audits nothing.
    (again,) = retention.purge_expired()
    assert not again.purged.anything
    assert db.session.scalar(
        select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "brand.retention_purged")) == 1  # fmt: skip


def test_the_inbox_preview_and_thread_show_an_expired_message(client):
    brand = _plant(retention_days=30)
    agent = AgentFactory(name="Cy Viewer")
    member(agent, brand)
    db.session.commit()
    # Only old content in this conversation: its preview quoted the old reply.
    conversation_id = db.session.scalar(
        select(Message.conversation_id).where(Message.mid == "old-echo")
    )
    db.session.execute(
        update(Message)
        .where(Message.mid == "fresh-1")
        .values(sent_at=utcnow() - timedelta(days=99))
    )
    db.session.commit()
    retention.purge_expired()
    assert db.session.get(Conversation, conversation_id).last_message_preview == "[expired]"
    signed_in(client, agent)
    html = client.get(f"/conversations/{conversation_id}").get_data(as_text=True)
    assert "Expired" in html and not [s for s in OLD if s in html]


def test_a_brand_without_retention_is_untouched_and_a_brand_filter_limits_the_run():
    _plant(retention_days=None)
    other = World("other")
    other.brand.retention_days = 30
    receive(other.channel, other.contact.platform_id, "Other shop RTOTHER5501 question")
    db.session.execute(update(Message).where(Message.brand_id == other.brand.id)
                       .values(sent_at=utcnow() - timedelta(days=60)))  # fmt: skip
    db.session.commit()

    assert retention.purge_expired(brand_id=other.brand.id + 1000) == []
    report = retention.purge_expired()

    assert [r.brand_id for r in report] == [other.brand.id]
    assert {s for s in OLD if scan([s])} == set(OLD), "the brand keeping forever keeps it all"
    assert scan(["RTOTHER5501"]) == []


def test_a_small_batch_size_still_purges_everything():
    brand = _plant(retention_days=30)
    (outcome,) = retention.purge_expired(brand_id=brand.id, batch_size=1)
    assert outcome.purged.messages == 3
    assert scan(OLD) == []


def test_flask_purge_expired_prints_what_was_purged_per_brand(app):
    brand = _plant(retention_days=30)
    runner = app.test_cli_runner()

    first = runner.invoke(args=["purge-expired"])
    second = runner.invoke(args=["purge-expired"])

    assert first.exit_code == 0, first.output
    assert f"brand {brand.id} ({brand.name})" in first.output
    assert "3 messages" in first.output and "1 notes" in first.output
    assert "nothing to purge" in second.output
    db.session.execute(update(Brand).values(retention_days=None))
    db.session.commit()
    assert "No brand has a retention period" in runner.invoke(args=["purge-expired"]).output


def test_the_beat_schedule_runs_the_purge_daily(app):
    from helpdesk.queueing import PURGE_EXPIRED, TASK_NAMES

    entry = app.extensions["celery"].conf.beat_schedule["purge-expired"]
    assert entry["task"] == PURGE_EXPIRED and PURGE_EXPIRED in TASK_NAMES
    assert entry["schedule"] == timedelta(days=1)


def test_the_daily_task_purges(app):
    from workers.tasks.retention import purge_expired_content

    _plant(retention_days=30)
    assert purge_expired_content() == 3
    assert scan(OLD) == []


def test_the_privacy_page_says_what_happens_and_shows_the_last_purge(client):
    world = World()
    signed_in(client, world.admin)
    html = client.get("/settings/privacy").get_data(as_text=True)
    assert "Conversations are kept forever" in html and "Nothing has been purged yet" in html

    assert post(client, "/settings/privacy", {"retention_days": "30"}).status_code == 303
    receive(world.channel, world.contact.platform_id, "Old question RTPAGE7001 here")
    db.session.execute(update(Message).values(sent_at=utcnow() - timedelta(days=60)))
    db.session.commit()
    retention.purge_expired()

    html = client.get("/settings/privacy").get_data(as_text=True)
    assert "Every day, messages older than 30 days lose their text, media links and raw" in html
    assert "tickets and figures stay" in html
    assert "Last purge" in html and "2 messages" in html and "RTPAGE7001" not in html
    audit = client.get("/settings/audit")
    assert audit.status_code == 200 and "RTPAGE7001" not in audit.get_data(as_text=True)
