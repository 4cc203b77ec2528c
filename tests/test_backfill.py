"""Backfill: a newly connected account's recent history read through the Conversations API of
the simulator, paced, resumable, and stored once whatever the webhooks bring meanwhile."""

from __future__ import annotations

import json
import os
import signal
from datetime import datetime, timedelta
from itertools import pairwise
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import func, select

from helpdesk.channels import backfill, history, lifecycle
from helpdesk.channels.models import Backfill, Channel, ChannelStatus
from helpdesk.channels.service import connect_channel
from helpdesk.dm.models import Contact, Conversation, Direction, Message, Reaction
from helpdesk.extensions import db
from helpdesk.media.models import MediaObject
from helpdesk.queueing import RESUME_BACKFILLS
from helpdesk.tickets.models import Ticket, TicketEvent, TicketStatus
from helpdesk.types import utcnow
from tests.conftest import drain_broker, fresh, wait_for
from tests.factories import BrandFactory
from tests.helpers.console import signed_in
from tests.helpers.webhooks import ACCOUNT, post, process_all
from tests.helpers.world import World

USERNAME = "acme_shop"
HOUR = 3600
DAY = 24 * HOUR


@pytest.fixture
def fast(app, monkeypatch):
    """Tests that do not measure the pace run it quickly."""
    monkeypatch.setitem(app.config, "BACKFILL_CALLS_PER_SECOND", 1000)
    monkeypatch.setitem(app.config, "BACKFILL_RETRY_SECONDS", 0.05)


@pytest.fixture
def worker_env(sim_worker_env):
    """Real workers read the simulator, at a pace slow enough to be killed half-way, and take
    a worker that has been silent for 2 seconds for dead."""
    return {**sim_worker_env, "BACKFILL_CALLS_PER_SECOND": "5", "BACKFILL_LEASE_SECONDS": "2"}


def connect(app) -> Channel:
    """A first connection through the lifecycle, as Instagram Login's callback does it."""
    channel = connect_channel(BrandFactory(), "instagram", ACCOUNT, "old-token")
    lifecycle.mark_connected(channel, "IGQVJtoken", username=USERNAME)
    db.session.commit()
    drain_broker(app)  # the task the commit queued: these tests run the backfill themselves
    return channel


def chat(customer: str, *turns: tuple[str, int, str], username: str | None = None) -> dict:
    """A conversation: (who, seconds ago, text) per message."""
    return {
        "customer": {"id": customer, "username": username or f"user_{customer[-4:]}"},
        "messages": [{"from": who, "created_time": -ago, "text": text} for who, ago, text in turns],
    }


def answered(customer: str, days_ago: int = 3) -> dict:
    ago = days_ago * DAY
    return chat(
        customer, ("customer", ago, "Hello?"), ("business", ago - 60, "Hi, how can we help?")
    )


def the_backfill(channel_id: int) -> Backfill:
    db.session.expire_all()
    return db.session.scalar(select(Backfill).where(Backfill.channel_id == channel_id))


def count(model, *where) -> int:
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def mids_stored(channel_id: int) -> dict[str, int]:
    rows = db.session.execute(
        select(Message.mid, func.count())
        .where(Message.channel_id == channel_id)
        .group_by(Message.mid)
    )
    return dict(rows.all())


def seeded_ids(seeded: dict) -> list[str]:
    return [mid for conversation in seeded["conversations"] for mid in conversation["message_ids"]]


def test_connecting_an_account_queues_its_backfill(app, sim):
    channel = connect_channel(BrandFactory(), "instagram", ACCOUNT, "old-token")
    lifecycle.mark_connected(channel, "IGQVJtoken", username=USERNAME)
    db.session.commit()
    queued = drain_broker(app)
    row = the_backfill(channel.id)
    assert row.status == "pending"
    assert ("workers.tasks.backfill.run_backfill", [row.id]) in queued
    assert backfill.progress(channel.id)["summary"] == "Recent history will be read shortly."


def test_history_is_read_over_several_pages(app, sim, fast):
    channel = connect(app)
    customers = [f"6120000000000{n:03d}" for n in range(5)]
    seeded = sim.seed_history(
        ACCOUNT, [answered(c) for c in customers], username=USERNAME, page_size=2
    )

    assert backfill.run(the_backfill(channel.id).id) == "done"

    row = the_backfill(channel.id)
    assert (row.status, row.conversations_done, row.messages_stored) == ("done", 5, 10)
    assert row.next_url is None and row.finished_at is not None and row.error is None
    assert len(sim.requests("conversations")) == 3  # 2 + 2 + 1
    assert mids_stored(channel.id) == {mid: 1 for mid in seeded_ids(seeded)}
    contacts = db.session.scalars(select(Contact).where(Contact.channel_id == channel.id)).all()
    assert sorted(c.platform_id for c in contacts) == customers  # never the brand itself
    assert {c.username for c in contacts} == {f"user_{c[-4:]}" for c in customers}
    outbound = db.session.scalars(
        select(Message).where(Message.direction == Direction.OUTBOUND)
    ).all()
    assert len(outbound) == 5 and all(m.is_echo and m.contact_id for m in outbound)
    assert count(Ticket) == 0
    assert backfill.progress(channel.id)["summary"] == (
        "Recent history read: 5 conversations, 10 messages."
    )


def test_history_keeps_its_own_times(app, sim, fast):
    channel = connect(app)
    seeded = sim.seed_history(
        ACCOUNT,
        [{"customer": {"id": "61200000000001"}, "messages": [
            {"from": "customer", "created_time": "2026-07-12T19:11:07+00:00", "text": "Hi"},
        ]}],
        username=USERNAME,
    )  # fmt: skip
    backfill.run(the_backfill(channel.id).id)
    message = db.session.scalar(select(Message).where(Message.mid == seeded_ids(seeded)[0]))
    assert message.sent_at == datetime.fromisoformat("2026-07-12T19:11:07+00:00")
    assert message.text == "Hi"


def test_only_the_20_newest_messages_of_a_conversation_are_read(app, sim, fast):
    channel = connect(app)
    turns = [("customer", (30 - n) * DAY, f"message {n}") for n in range(25)]
    seeded = sim.seed_history(ACCOUNT, [chat("61200000000002", *turns)], username=USERNAME)
    backfill.run(the_backfill(channel.id).id)

    ids = seeded_ids(seeded)
    assert set(mids_stored(channel.id)) == set(ids[5:])  # the 5 oldest are out of reach
    assert len(sim.requests("history_message")) == 20
    assert the_backfill(channel.id).messages_stored == 20


def test_calls_are_paced_at_two_a_second_by_default(app, sim):
    channel = connect(app)
    turns = [("customer", (10 - n) * DAY, f"message {n}") for n in range(4)]
    sim.seed_history(ACCOUNT, [chat("61200000000003", *turns)], username=USERNAME)
    assert app.config["BACKFILL_CALLS_PER_SECOND"] == 2

    backfill.run(the_backfill(channel.id).id)

    times = [datetime.fromisoformat(r["received_at"]) for r in sim.requests()]
    assert len(times) == 6  # the list, the conversation, its 4 messages
    gaps = [(later - earlier).total_seconds() for earlier, later in pairwise(times)]
    assert min(gaps) >= 0.45, gaps
    for start in times:  # never more than 2 calls within any second
        assert sum(start <= t < start + timedelta(seconds=0.95) for t in times) <= 2


def webhook(mid: str, sender: str, recipient: str, at: datetime, **message) -> bytes:
    event = {
        "sender": {"id": sender},
        "recipient": {"id": recipient},
        "timestamp": int(at.timestamp() * 1000),
        "message": {"mid": mid, "text": "same", **message},
    }
    return json.dumps(
        {"object": "instagram", "entry": [{"id": ACCOUNT, "messaging": [event]}]}
    ).encode()


def test_a_message_brought_by_a_webhook_and_the_backfill_is_stored_once(app, client, sim, fast):
    channel = connect(app)
    customer = "61200000000004"
    seeded = sim.seed_history(
        ACCOUNT,
        [chat(customer, ("customer", 3 * DAY, "Hi"), ("business", 3 * DAY - 60, "Hello"),
              ("customer", 2 * DAY, "Thanks"), ("business", 2 * DAY - 60, "Anytime"))],
        username=USERNAME,
    )  # fmt: skip
    first, reply, later, last_reply = seeded_ids(seeded)
    old = utcnow() - timedelta(days=3)
    # Before the backfill reaches it: the customer's first message and the brand's reply.
    assert post(client, webhook(first, customer, ACCOUNT, old)).status_code == 200
    assert post(client, webhook(reply, ACCOUNT, customer, old, is_echo=True)).status_code == 200
    process_all()

    backfill.run(the_backfill(channel.id).id)
    # After it: the same two later messages again.
    post(client, webhook(later, customer, ACCOUNT, old))
    post(client, webhook(last_reply, ACCOUNT, customer, old, is_echo=True))
    process_all()

    assert mids_stored(channel.id) == {first: 1, reply: 1, later: 1, last_reply: 1}
    assert the_backfill(channel.id).messages_stored == 2  # the other two were already there
    assert count(Conversation, Conversation.channel_id == channel.id) == 1
    assert count(Contact, Contact.platform_id == ACCOUNT) == 0


def test_a_reaction_that_came_before_its_history_message_is_applied_when_it_lands(
    app, client, sim, fast
):
    channel = connect(app)
    customer = "61200000000005"
    seeded = sim.seed_history(
        ACCOUNT,
        [chat(customer, ("customer", 3 * DAY, "Hi"), ("business", 3 * DAY - 60, "Hello"))],
        username=USERNAME,
    )
    reply = seeded_ids(seeded)[1]
    event = {
        "sender": {"id": customer},
        "recipient": {"id": ACCOUNT},
        "timestamp": int(utcnow().timestamp() * 1000),
        "reaction": {"mid": reply, "action": "react", "reaction": "love", "emoji": "❤️"},
    }
    body = {"object": "instagram", "entry": [{"id": ACCOUNT, "messaging": [event]}]}
    assert post(client, json.dumps(body).encode()).status_code == 200
    process_all()

    backfill.run(the_backfill(channel.id).id)

    message = db.session.scalar(select(Message).where(Message.mid == reply))
    assert db.session.scalars(
        select(Reaction.emoji).where(Reaction.message_id == message.id)
    ).all() == ["❤️"]


def test_history_opens_a_ticket_only_for_a_customer_still_waiting(app, sim, fast):
    channel = connect(app)
    waiting_since = 2 * HOUR
    sim.seed_history(
        ACCOUNT,
        [
            answered("61200000000010"),
            chat("61200000000011", ("customer", 5 * HOUR, "Hi"), ("business", 4 * HOUR, "Hello"),
                 ("customer", waiting_since, "Is it in stock?"),
                 ("customer", HOUR, "Anyone?")),
            chat("61200000000012", ("customer", 30 * HOUR, "Too late now")),
            chat("61200000000013", ("customer", 3 * HOUR, "Hi"), ("business", 2 * HOUR, "Yes")),
        ],
        username=USERNAME,
    )  # fmt: skip
    backfill.run(the_backfill(channel.id).id)

    tickets = db.session.scalars(select(Ticket)).all()
    assert len(tickets) == 1
    ticket = tickets[0]
    conversation = db.session.get(Conversation, ticket.conversation_id)
    contact = db.session.get(Contact, conversation.contact_id)
    assert contact.platform_id == "61200000000011"
    assert ticket.status is TicketStatus.OPEN
    waited = db.session.scalar(select(Message).where(Message.text == "Is it in stock?"))
    assert ticket.opened_at == waited.sent_at  # counted from when the customer began to wait
    assert ticket.first_response_at is None
    kinds = set(
        db.session.scalars(select(TicketEvent.kind).where(TicketEvent.ticket_id == ticket.id))
    )
    assert not kinds & {"first_response", "response"}
    in_ticket = db.session.scalars(select(Message.text).where(Message.ticket_id == ticket.id))
    assert sorted(in_ticket) == ["Anyone?", "Is it in stock?"]  # older history stays outside


def test_rate_limits_wait_and_try_again(app, sim, fast):
    channel = connect(app)
    seeded = sim.seed_history(ACCOUNT, [answered("61200000000020")], username=USERNAME)
    sim.fail_history(4, endpoint="conversations")
    sim.fail_history(613, endpoint="history_message")
    sim.fail_history(17, endpoint="conversation")

    assert backfill.run(the_backfill(channel.id).id) == "done"

    statuses = [r["status"] for r in sim.requests()]
    assert statuses.count(400) == 3
    assert mids_stored(channel.id) == {mid: 1 for mid in seeded_ids(seeded)}


def test_rate_limits_that_never_end_stop_the_backfill_in_words(app, sim, fast, monkeypatch):
    monkeypatch.setitem(app.config, "BACKFILL_RETRIES", 2)
    channel = connect(app)
    sim.seed_history(ACCOUNT, [answered("61200000000021")], username=USERNAME)
    sim.fail_history(613, times=None)

    assert backfill.run(the_backfill(channel.id).id) == "failed"
    row = the_backfill(channel.id)
    assert "too many calls" in row.error
    assert len(sim.requests()) == 3
    assert db.session.get(Channel, channel.id).status is ChannelStatus.ACTIVE


def test_a_refused_token_asks_for_a_reconnect_and_the_backfill_resumes_after_it(app, sim, fast):
    channel = connect(app)
    customers = [f"612000000000{n:02d}" for n in range(30, 33)]
    seeded = sim.seed_history(ACCOUNT, [answered(c) for c in customers], username=USERNAME)
    # The first conversation is read (rules apply in order), the second one's token is refused.
    sim.fail_history(None, endpoint="conversation", delay_ms=1, times=1)
    sim.fail_history(190, endpoint="conversation", times=None)
    assert backfill.run(the_backfill(channel.id).id) == "failed"

    row = the_backfill(channel.id)
    assert "Reconnect the account" in row.error and row.conversations_done == 1
    db.session.expire_all()
    assert db.session.get(Channel, channel.id).status is ChannelStatus.NEEDS_RECONNECT
    summary = backfill.progress(channel.id)["summary"]
    assert summary.startswith("Reading history stopped after 1 conversation, 2 messages:")

    sim.clear_errors()
    lifecycle.mark_connected(db.session.get(Channel, channel.id), "IGQVJnew", username=USERNAME)
    db.session.commit()
    assert ("workers.tasks.backfill.run_backfill", [row.id]) in drain_broker(app)
    assert backfill.run(row.id) == "done"
    assert mids_stored(channel.id) == {mid: 1 for mid in seeded_ids(seeded)}
    assert the_backfill(channel.id).conversations_done == 3


def test_two_workers_never_run_the_same_backfill(app, sim):
    channel = connect(app)
    backfill_id = the_backfill(channel.id).id
    first = backfill.Job.claim(backfill_id)
    assert first is not None
    assert backfill.Job.claim(backfill_id) is None
    assert backfill.run(backfill_id) is None


def test_a_worker_that_lost_its_claim_stops_at_its_next_write(app, sim, monkeypatch):
    monkeypatch.setitem(app.config, "BACKFILL_LEASE_SECONDS", 0)
    channel = connect(app)
    backfill_id = the_backfill(channel.id).id
    slow = backfill.Job.claim(backfill_id)
    assert backfill.Job.claim(backfill_id) is not None  # the first one looked dead
    with pytest.raises(backfill.LostClaim):
        slow.renew()


def test_the_bookmark_never_keeps_the_access_token():
    url = "https://graph.instagram.com/v25.0/me/conversations?platform=instagram&access_token=IGQ&after=QVF"
    assert backfill.without_token(url) == (
        "https://graph.instagram.com/v25.0/me/conversations?platform=instagram&after=QVF"
    )
    assert backfill.split_bookmark(url + "#done=3")[1] == 3


@pytest.mark.worker
def test_a_killed_worker_is_followed_by_one_that_finishes_the_backfill(app, sim, celery_process):
    channel = connect(app)
    customers = [f"612000000001{n:02d}" for n in range(8)]
    conversations = [
        chat(
            c,
            *[("customer" if k % 2 == 0 else "business", (9 - k) * DAY, f"m{k}") for k in range(4)],
        )
        for c in customers
    ]
    seeded = sim.seed_history(ACCOUNT, conversations, username=USERNAME, page_size=3)
    backfill_id = the_backfill(channel.id).id
    app.extensions["celery"].send_task("workers.tasks.backfill.run_backfill", args=[backfill_id])

    first = celery_process("worker", "--pool=solo", "--without-mingle", "--without-gossip")
    halfway = wait_for(
        lambda: the_backfill(channel.id).conversations_done >= 2 and True, timeout=60
    )
    assert halfway, "the first worker never got going"
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    row = fresh(lambda: the_backfill(channel.id))
    assert row.status == "running" and row.conversations_done < len(customers)
    done_before = row.conversations_done

    celery_process("worker", "--pool=solo", "--without-mingle", "--without-gossip")
    # Beat's sweep, once the dead worker's lease has lapsed.
    app.extensions["celery"].send_task(RESUME_BACKFILLS)
    finished = wait_for(lambda: the_backfill(channel.id).status == "done", timeout=90)
    if not finished:  # the sweep ran before the lease lapsed: beat would run it again
        app.extensions["celery"].send_task(RESUME_BACKFILLS)
        finished = wait_for(lambda: the_backfill(channel.id).status == "done", timeout=90)
    assert finished, fresh(lambda: the_backfill(channel.id).error)

    row = fresh(lambda: the_backfill(channel.id))
    assert row.conversations_done == len(customers)
    assert fresh(lambda: mids_stored(channel.id)) == {mid: 1 for mid in seeded_ids(seeded)}
    # The second worker started at the bookmark: at most the interrupted conversation again.
    fetched = [r["path"].rsplit("/", 1)[-1] for r in sim.requests("conversation")]
    assert len(fetched) <= len(customers) + 1
    assert done_before >= 2


# Connected through the simulated Instagram Login ---------------------------------------------

PUBLIC = "https://desk.example"
OUTLET_ID = "17841400000000000456"  # the simulator's second account on its authorize page


def test_an_account_connected_with_instagram_login_gets_its_own_history(
    app, client, sim, fast, monkeypatch
):
    for key in ("INSTAGRAM_AUTH_BASE", "INSTAGRAM_TOKEN_BASE"):
        monkeypatch.setitem(app.config, key, sim.root_url)
    monkeypatch.setitem(app.config, "PUBLIC_BASE_URL", PUBLIC)
    world = World()
    sim.seed_demo_history("17841400000000000123", username="sim_business")
    sim.seed_demo_history(OUTLET_ID, username="sim_outlet")
    signed_in(client, world.admin)

    authorize = client.get("/settings/channels/instagram/connect").headers["Location"]
    form = {k: v[0] for k, v in parse_qs(urlsplit(authorize).query).items()}
    answer = httpx.post(
        f"{sim.root_url}/oauth/authorize", data={**form, "decision": "allow", "account": OUTLET_ID}
    )
    back = urlsplit(answer.headers["Location"])
    assert client.get(f"{back.path}?{back.query}").status_code == 302
    channel = db.session.scalar(select(Channel).where(Channel.account_id == OUTLET_ID))
    drain_broker(app)

    assert backfill.run(the_backfill(channel.id).id) == "done"

    usernames = db.session.scalars(
        select(Contact.username).where(Contact.channel_id == channel.id)
    ).all()
    assert sorted(usernames) == ["lena.k", "maria.sews", "tom_outdoors"]
    assert the_backfill(channel.id).messages_stored == 8
    ticket = db.session.scalar(select(Ticket).where(Ticket.channel_id == channel.id))
    assert ticket is not None and ticket.status is TicketStatus.OPEN  # Lena is still waiting


def test_backfilled_media_is_copied_like_a_webhooks(app):
    channel = connect(app)
    at = utcnow() - timedelta(days=2)
    photo = history.HistoryMessage(
        id="hist-photo-1",
        at=at,
        from_business=False,
        customer_id="6160000000000042",
        customer_username="photo.person",
        raw={"attachments": {"data": [{"image_data": {"url": "https://cdn.example.test/h.jpg"}}]}},
    )
    assert history.store_conversation(channel, [photo], utcnow()) == 1
    db.session.commit()
    message = db.session.scalar(select(Message).where(Message.mid == "hist-photo-1"))
    (copy,) = db.session.scalars(select(MediaObject)).all()
    assert (copy.message_id, copy.kind, copy.source_url) == (
        message.id,
        "image",
        "https://cdn.example.test/h.jpg",
    )
