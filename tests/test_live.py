"""Live updates: events leave after the commit that caused them, reach only the consoles allowed
to see them (the Redis stream, or the poll on the embedded default), and agents see each other
viewing and typing on a conversation until their heartbeats stop."""

from __future__ import annotations

import queue
import re
import threading
import time
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select

from helpdesk import queueing
from helpdesk.dm import service as dm
from helpdesk.dm.models import Conversation, Message, MessageStatus, RequestState
from helpdesk.extensions import db
from helpdesk.inbox import service as inbox
from helpdesk.live import events
from helpdesk.live import service as live
from helpdesk.live.models import LiveEvent, Presence
from helpdesk.tickets import notes
from helpdesk.tickets import service as tickets
from helpdesk.tickets.models import Ticket
from helpdesk.types import utcnow
from tests.conftest import REDIS_URL, drain_broker, serving, table_counts
from tests.factories import ContactFactory
from tests.helpers.console import CSRF_RE, csrf_token, post, signed_in
from tests.helpers.world import World, known_contact, receive

NEEDS_REDIS = "REDIS_URL is not set: the Redis stream and presence run where it is (CI)"


@pytest.fixture
def polled(app, monkeypatch):
    """The embedded default, whatever the environment: events are rows, the console polls."""
    monkeypatch.setitem(app.config, "REDIS_URL", None)


@pytest.fixture
def redis(app, monkeypatch):
    if not REDIS_URL:
        pytest.skip(NEEDS_REDIS)
    monkeypatch.setitem(app.config, "REDIS_URL", REDIS_URL)
    events.reset()
    client = events.redis_client()
    for key in client.scan_iter("helpdesk:live:presence:*"):
        client.delete(key)  # ids restart with every test: forget the last test's viewers
    return client


@pytest.fixture(params=["database", "redis"])
def backend(request) -> str:
    request.getfixturevalue("polled" if request.param == "database" else "redis")
    return request.param


def ticket_of(conversation: Conversation) -> Ticket:
    db.session.refresh(conversation)
    return db.session.get(Ticket, conversation.current_ticket_id)


def poll(client, cursor: str, conversation_id: int | None = None) -> dict:
    url = f"/live?since={cursor}"
    if conversation_id is not None:
        url += f"&conversation={conversation_id}"
    response = client.get(url)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.json


def start(client, conversation_id: int | None = None) -> str:
    url = "/live" if conversation_id is None else f"/live?conversation={conversation_id}"
    return client.get(url).json["cursor"]


def kinds(found: list[dict]) -> list[tuple]:
    return [(e["type"], e.get("message_id") or e.get("ticket_id")) for e in found]


class Heard:
    """A brand's events as a console of `agent_id` receives them, from whichever backend is on:
    a subscription opened now (Redis) or a cursor taken now (the poll)."""

    def __init__(self, brand_id: int, agent_id: int, admin: bool = True):
        self.brand_id = brand_id
        self.audience = live.Audience(agent_id=agent_id, admin=admin)
        if events.streaming():
            self._stream = live.subscribe(brand_id).events(self.audience, 10, heartbeat=0.2)
        else:
            self.cursor = live.cursor_now(brand_id)
            db.session.commit()

    def events(self) -> list[dict]:
        if not events.streaming():
            self.cursor, found = live.poll(self.brand_id, self.cursor, self.audience)
            db.session.commit()
            return found
        found = []
        for item in self._stream:  # what was published is already waiting: then a heartbeat
            if item is None:
                return found
            found.append(item)
        return found


# Publishing after the commit ----------------------------------------------------------------------


def test_an_event_leaves_with_its_commit_and_not_before(world, backend):
    heard = Heard(world.brand.id, world.agent.id)
    message = receive(world.channel, world.contact.platform_id, "Is it in stock?")
    db.session.flush()
    assert heard.events() == []
    db.session.commit()
    assert ("message.created", message.id) in kinds(heard.events())


def test_a_rolled_back_change_publishes_nothing(world, backend):
    heard = Heard(world.brand.id, world.agent.id)
    before = table_counts()
    receive(world.channel, world.contact.platform_id, "never stored")
    db.session.rollback()
    db.session.commit()
    assert heard.events() == []
    assert table_counts() == before


def test_an_event_queued_in_a_failed_savepoint_is_dropped(world, backend):
    heard = Heard(world.brand.id, world.agent.id)
    kept = receive(world.channel, world.contact.platform_id, "kept")
    with pytest.raises(RuntimeError), db.session.begin_nested():
        receive(world.channel, world.contact.platform_id, "undone")
        raise RuntimeError
    db.session.commit()
    found = [e for e in heard.events() if e["type"] == "message.created"]
    assert [e["message_id"] for e in found] == [kept.id]


def test_a_ticket_changed_twice_in_one_transaction_is_one_event_with_its_last_state(world, backend):
    ticket = ticket_of(world.conversation)
    heard = Heard(world.brand.id, world.agent.id)
    tickets.assign(ticket, world.agent.id, world.manager)
    tickets.set_status(ticket, "resolved", world.manager)
    db.session.commit()
    updates = [e for e in heard.events() if e["type"] == "ticket.updated"]
    assert len(updates) == 1
    assert updates[0]["status"] == "resolved"
    assert updates[0]["assignee_id"] == world.agent.id
    assert updates[0]["conversation_id"] == world.conversation.id


def test_a_notification_reaches_only_its_agent(world, backend):
    ticket = ticket_of(world.conversation)
    for_agent = Heard(world.brand.id, world.agent.id)
    for_manager = Heard(world.brand.id, world.manager.id)
    tickets.assign(ticket, world.agent.id, world.manager)
    db.session.commit()
    assert "notification.created" in [e["type"] for e in for_agent.events()]
    assert "notification.created" not in [e["type"] for e in for_manager.events()]


def test_a_hidden_request_is_heard_by_admins_only(world, backend):
    world.brand.hidden_words = ["giveaway"]
    stranger = ContactFactory(channel=world.channel)
    db.session.commit()
    admin = Heard(world.brand.id, world.admin.id, admin=True)
    agent = Heard(world.brand.id, world.agent.id, admin=False)
    message = receive(world.channel, stranger.platform_id, "Win our giveaway")
    assert db.session.get(Conversation, message.conversation_id).request_state is (
        RequestState.HIDDEN
    )
    db.session.commit()
    assert ("message.created", message.id) in kinds(admin.events())
    assert agent.events() == []


def test_a_delivery_worker_announces_the_new_status(app, world, backend, monkeypatch):
    from devtools.graphsim.testing import running_simulator
    from workers.tasks.delivery import deliver_message

    reply = inbox.reply(world.conversation, world.agent, text="It ships today")
    db.session.commit()
    heard = Heard(world.brand.id, world.agent.id)
    with running_simulator() as sim:
        monkeypatch.setitem(app.config, "GRAPH_API_BASE", sim.base_url)
        assert deliver_message(reply.id) == "sent"
    updated = [e for e in heard.events() if e["type"] == "message.updated"]
    assert [(e["message_id"], e["status"]) for e in updated] == [(reply.id, "sent")]


def test_the_intake_worker_publishes_what_a_webhook_brought(client, world, backend):
    import hashlib
    import hmac
    import json

    from helpdesk.intake import service as intake
    from helpdesk.intake.models import WebhookEvent

    heard = Heard(world.brand.id, world.agent.id)
    body = {
        "object": "instagram",
        "entry": [
            {
                "id": world.channel.account_id,
                "time": 1,
                "messaging": [
                    {
                        "sender": {"id": world.contact.platform_id},
                        "recipient": {"id": world.channel.account_id},
                        "timestamp": int(utcnow().timestamp() * 1000),
                        "message": {"mid": "m_live_1", "text": "Any news?"},
                    }
                ],
            }
        ],
    }
    raw = json.dumps(body).encode()
    signature = hmac.new(b"test-app-secret", raw, hashlib.sha256).hexdigest()
    response = client.post(
        "/webhooks/instagram",
        data=raw,
        headers={"X-Hub-Signature-256": f"sha256={signature}", "Content-Type": "application/json"},
    )
    assert response.status_code == 200
    for event_id in db.session.scalars(select(WebhookEvent.id)).all():
        intake.process_event(event_id)
        db.session.commit()
    message_id = db.session.scalar(select(Message.id).where(Message.mid == "m_live_1"))
    assert ("message.created", message_id) in kinds(heard.events())


def test_a_colleagues_note_is_heard_once_per_note(world, backend):
    heard = Heard(world.brand.id, world.manager.id)
    ticket = ticket_of(world.conversation)
    first = notes.add_note(ticket, world.agent, "Refund approved")
    second = notes.add_note(ticket, world.agent, "Label sent")
    db.session.commit()
    found = [e for e in heard.events() if e["type"] == "note.created"]
    assert [(e["conversation_id"], e["note_id"]) for e in found] == [
        (world.conversation.id, first.id),
        (world.conversation.id, second.id),
    ]
    assert "Refund" not in repr(found), "an event carries ids, never the text"


def test_an_agents_reaction_is_heard_by_colleagues(client, world, backend, app):
    queueing.reset()
    drain_broker(app)  # the reaction goes to the real broker too: start from an empty one
    heard = Heard(world.brand.id, world.manager.id)
    signed_in(client, world.agent)
    path = f"/conversations/{world.conversation.id}/messages/{world.message.id}/react"
    assert post(client, path, {"emoji": "👍"}).status_code == 302
    assert ("message.updated", world.message.id) in kinds(heard.events())
    assert post(client, path, {"emoji": ""}).status_code == 302  # removed
    assert ("message.updated", world.message.id) in kinds(heard.events())
    assert drain_broker(app) == [
        (queueing.DELIVER_REACTION, [world.message.id, "👍"]),
        (queueing.DELIVER_REACTION, [world.message.id, None]),
    ]


# The poll (embedded default) --------------------------------------------------------------------


def test_the_poll_returns_the_new_message_since_the_cursor(client, world, polled):
    signed_in(client, world.agent)
    cursor = start(client)
    assert poll(client, cursor) == {"cursor": cursor, "events": []}
    message = receive(world.channel, world.contact.platform_id, "Hello again")
    db.session.commit()
    answer = poll(client, cursor)
    created = [e for e in answer["events"] if e["type"] == "message.created"]
    assert created == [
        {
            "type": "message.created",
            "id": created[0]["id"],
            "conversation_id": world.conversation.id,
            "message_id": message.id,
            "direction": "inbound",
            "status": "received",
            "admin_only": False,
        }
    ]
    assert int(answer["cursor"]) > int(cursor)
    assert poll(client, answer["cursor"])["events"] == []


def test_the_poll_of_a_conversation_page_keeps_to_that_conversation(client, world, polled):
    other = receive(world.channel, ContactFactory(channel=world.channel).platform_id, "other")
    db.session.commit()
    signed_in(client, world.agent)
    cursor = start(client, world.conversation.id)
    receive(world.channel, world.contact.platform_id, "this one")
    receive(world.channel, ContactFactory(channel=world.channel).platform_id, "elsewhere")
    inbox.reply(db.session.get(Conversation, other.conversation_id), world.manager, text="hi")
    db.session.commit()
    answer = poll(client, cursor, world.conversation.id)
    assert {e["conversation_id"] for e in answer["events"]} == {world.conversation.id}
    assert answer["presence"] == []


def test_the_poll_never_shows_another_brands_events(client, world, polled):
    other = World("other")
    signed_in(client, world.agent)
    cursor = start(client)
    receive(other.channel, other.contact.platform_id, "for the other brand")
    tickets.assign(ticket_of(other.conversation), other.agent.id, other.manager)
    db.session.commit()
    answer = poll(client, cursor)
    assert answer["events"] == []
    assert int(answer["cursor"]) > int(cursor)  # passed over, not held as a gap


def test_the_cursor_waits_at_a_gap_a_slower_transaction_may_fill(world, polled, is_postgres):
    if not is_postgres:
        pytest.skip("SQLite has one writer at a time: no transaction overtakes another")
    brand_id = world.brand.id
    audience = live.Audience(agent_id=world.agent.id, admin=False)
    start_at = live.cursor_now(brand_id)
    gap = LiveEvent(id=start_at + 5, brand_id=brand_id, kind="ticket.updated", data={})
    gap.data = {"type": "ticket.updated", "conversation_id": world.conversation.id}
    db.session.add(gap)
    db.session.commit()
    cursor, found = live.poll(brand_id, start_at, audience)
    assert cursor == start_at and [e["id"] for e in found] == [gap.id]  # shown, not passed
    gap.created_at = utcnow() - timedelta(seconds=10)
    db.session.commit()
    cursor, _found = live.poll(brand_id, start_at, audience)
    assert cursor == gap.id  # the gap is old enough: nothing will fill it now


def test_the_page_starts_polling_from_the_cursor_it_was_rendered_with(client, world, polled):
    receive(world.channel, world.contact.platform_id, "before the page")
    db.session.commit()
    signed_in(client, world.agent)
    page = client.get(f"/conversations/{world.conversation.id}").get_data(as_text=True)
    cursor = re.search(r'id="live" hidden data-poll-url="/live" data-cursor="(\d+)"', page)[1]
    assert "data-stream-url" not in page
    assert poll(client, cursor)["events"] == []


def test_without_redis_there_is_no_stream_to_open(client, world, polled):
    signed_in(client, world.agent)
    response = client.get("/live/stream")
    assert response.status_code == 404
    assert "polls /live" in response.json["error"]["message"]


# Who may ask ------------------------------------------------------------------------------------


def test_strangers_are_refused_by_every_live_route(client, world):
    conversation_id, message_id = world.conversation.id, world.message.id
    for path in ("/live", f"/live?conversation={conversation_id}", "/live/stream"):
        response = client.get(path)
        assert response.status_code == 401, path
        assert response.json["error"]["code"] == "unauthorized"
    for path in (
        f"/conversations/{conversation_id}/thread/newer?after=0",
        f"/conversations/{conversation_id}/thread/messages/{message_id}",
        f"/conversations/{conversation_id}/thread/notes/1",
    ):
        response = client.get(path)
        assert response.status_code == 302 and "/login" in response.headers["Location"]
    token = csrf_token(client)  # an anonymous session may hold a token; it is not enough
    path = f"/conversations/{conversation_id}/presence"
    assert client.post(path, data={"csrf_token": token}).status_code == 401
    assert db.session.scalar(select(Presence.id)) is None


def test_another_brands_conversation_is_not_found_here(client, world, backend):
    other = World("other")
    theirs = notes.add_note(ticket_of(other.conversation), other.agent, "their note").id
    db.session.commit()
    signed_in(client, world.agent)
    before = table_counts()
    paths = [
        f"/live?conversation={other.conversation.id}",
        f"/conversations/{other.conversation.id}/thread/newer?after=0",
        f"/conversations/{other.conversation.id}/thread/messages/{other.message.id}",
        f"/conversations/{world.conversation.id}/thread/messages/{other.message.id}",
        f"/conversations/{other.conversation.id}/thread/notes/{theirs}",
        f"/conversations/{world.conversation.id}/thread/notes/{theirs}",
    ]
    if backend == "redis":
        paths.append(f"/live/stream?conversation={other.conversation.id}")
    for path in paths:
        assert client.get(path).status_code == 404, path
    response = post(client, f"/conversations/{other.conversation.id}/presence")
    assert response.status_code == 404
    assert table_counts() == before
    assert live.viewers(other.conversation.id) == []


def test_a_new_note_renders_as_the_thread_renders_notes_and_only_in_its_conversation(client, world):
    note = notes.add_note(
        ticket_of(world.conversation), world.manager, "<script>alert(1)</script> VIP, be quick"
    )
    elsewhere = receive(world.channel, ContactFactory(channel=world.channel).platform_id, "hi")
    db.session.commit()
    signed_in(client, world.agent)
    response = client.get(f"/conversations/{world.conversation.id}/thread/notes/{note.id}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert f'id="note{note.id}"' in page and world.manager.name in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; VIP, be quick" in page and "<script>" not in page
    other = f"/conversations/{elsewhere.conversation_id}/thread/notes/{note.id}"
    assert client.get(other).status_code == 404


def test_a_hidden_request_is_not_polled_below_admin(client, world, polled):
    world.brand.hidden_words = ["giveaway"]
    stranger = ContactFactory(channel=world.channel)
    message = receive(world.channel, stranger.platform_id, "Win our giveaway")
    db.session.commit()
    signed_in(client, world.agent)
    assert client.get(f"/live?conversation={message.conversation_id}").status_code == 403
    hidden = message.conversation_id
    assert all(e.get("conversation_id") != hidden for e in poll(client, "0")["events"])
    post(client, "/logout")
    signed_in(client, world.admin)
    assert any(e.get("conversation_id") == hidden for e in poll(client, "0")["events"])


def test_a_malformed_cursor_is_a_400(client, world):
    signed_in(client, world.agent)
    for query in ("since=yesterday", "since=²", "since=99999999999999999999", "conversation=abc"):
        assert client.get(f"/live?{query}").status_code == 400, query


# Presence -----------------------------------------------------------------------------------------


def test_a_colleague_sees_me_viewing_then_typing_then_gone(app, world, backend):
    alex, sam = app.test_client(), app.test_client()
    signed_in(alex, world.agent)
    signed_in(sam, world.manager)
    path = f"/conversations/{world.conversation.id}/presence"

    assert post(alex, path, {"state": "viewing"}).json == {"presence": []}
    seen = post(sam, path, {"state": "viewing"}).json["presence"]
    assert [(v["name"], v["typing"]) for v in seen] == [("Acme Agent", 0)]
    assert 10 < seen[0]["viewing"] <= live.PRESENCE_SECONDS

    post(alex, path, {"state": "typing"})
    polled_now = sam.get(f"/live?conversation={world.conversation.id}").json["presence"]
    assert polled_now[0]["name"] == "Acme Agent" and polled_now[0]["typing"] > 0
    post(alex, path, {"state": "viewing"})  # a plain beat does not cut "typing" short
    assert live.viewers(world.conversation.id, world.manager.id)[0]["typing"] > 0

    later = utcnow() + timedelta(seconds=live.TYPING_SECONDS + 1)
    (still,) = live.viewers(world.conversation.id, world.manager.id, now=later)
    assert still["typing"] == 0 and still["viewing"] > 0

    assert post(alex, f"/conversations/{world.conversation.id}/leave").status_code == 204
    assert post(sam, path, {"state": "viewing"}).json == {"presence": []}


def test_presence_lapses_without_heartbeats(app, world, backend):
    alex = signed_in(app.test_client(), world.agent)
    post(alex, f"/conversations/{world.conversation.id}/presence")
    assert [v["agent_id"] for v in live.viewers(world.conversation.id)] == [world.agent.id]
    expired = utcnow() + timedelta(seconds=live.PRESENCE_SECONDS + 1)
    assert live.viewers(world.conversation.id, now=expired) == []
    if backend == "redis":
        ttl = events.redis_client().ttl(f"helpdesk:live:presence:{world.conversation.id}")
        assert 0 < ttl <= live.PRESENCE_SECONDS  # Redis forgets it by itself
    else:
        live.prune(expired + timedelta(seconds=live.PRESENCE_SECONDS))
        db.session.commit()
        assert db.session.scalar(select(Presence.id)) is None


def test_an_agent_never_sees_themself(app, world, backend):
    alex = signed_in(app.test_client(), world.agent)
    path = f"/conversations/{world.conversation.id}/presence"
    assert post(alex, path, {"state": "typing"}).json == {"presence": []}
    assert post(alex, path, {"state": "sleeping"}).status_code == 400


def test_presence_is_announced_on_the_stream(app, world, redis):
    heard = Heard(world.brand.id, world.manager.id)
    alex = signed_in(app.test_client(), world.agent)
    post(alex, f"/conversations/{world.conversation.id}/presence", {"state": "typing"})
    (announced,) = [e for e in heard.events() if e["type"] == "presence"]
    assert announced["agent_id"] == world.agent.id and announced["typing"] > 0
    post(alex, f"/conversations/{world.conversation.id}/leave")
    (gone,) = [e for e in heard.events() if e["type"] == "presence"]
    assert gone["viewing"] == 0


# The stream, over a real server (Redis) -----------------------------------------------------------


@pytest.fixture
def served(app, redis):
    with serving(app) as base_url:
        yield base_url


def browser_session(base_url: str, agent) -> httpx.Client:
    """Signed in over HTTP as a browser is. The test's own transaction ends first: on SQLite
    every transaction takes the write lock, and the server thread would wait for it."""
    from tests.factories import PASSWORD

    email = agent.email
    db.session.commit()
    session = httpx.Client(base_url=base_url, timeout=10)
    token = CSRF_RE.search(session.get("/login").text)[1]
    response = session.post(
        "/login", data={"email": email, "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 302, response.text[:300]
    return session


class Stream:
    """An EventSource's view of /live/stream: lines read in a thread, waited for with a timeout."""

    def __init__(self, session: httpx.Client, path: str):
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.status = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(session, path), daemon=True)
        self._thread.start()

    def _read(self, session: httpx.Client, path: str) -> None:
        try:
            with session.stream("GET", path, timeout=httpx.Timeout(10, read=30)) as response:
                self.status.put((response.status_code, response.headers.get("content-type")))
                for line in response.iter_lines():
                    self.lines.put(line)
        except httpx.HTTPError:
            pass
        self.lines.put(None)  # the server ended the stream

    def next_event(self, timeout: float = 5.0, where=lambda item: True) -> dict:
        import json

        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            assert line is not None, "the stream ended"
            if line.startswith("data: ") and where(item := json.loads(line[6:])):
                return item
        raise AssertionError(f"no event within {timeout} s")

    def wait_for(self, text: str, timeout: float = 5.0) -> float:
        """Seconds until the line `text` came, or the stream ended."""
        started = time.monotonic()
        while (left := timeout - (time.monotonic() - started)) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None or line == text:
                return time.monotonic() - started
        raise AssertionError(f"no {text!r} within {timeout} s")


def test_the_stream_brings_a_received_message_within_seconds(served, world):
    other = World("other")
    conversation_id = world.conversation.id
    session = browser_session(served, world.agent)
    stream = Stream(session, f"/live/stream?conversation={conversation_id}")
    assert stream.status.get(timeout=10) == (200, "text/event-stream; charset=utf-8")
    stream.wait_for(": connected")
    assert stream.next_event()["type"] == "presence.snapshot"

    receive(other.channel, other.contact.platform_id, "another brand's news")
    receive(world.channel, ContactFactory(channel=world.channel).platform_id, "other thread")
    db.session.commit()
    started = time.monotonic()
    message = receive(world.channel, world.contact.platform_id, "Where is my parcel?")
    db.session.commit()
    item = stream.next_event(where=lambda e: e["type"] == "message.created")
    assert time.monotonic() - started < 3
    assert item["message_id"] == message.id
    assert item["conversation_id"] == world.conversation.id
    session.close()


def test_the_stream_keeps_alive_and_ends_for_the_browser_to_reconnect(
    app, served, world, monkeypatch
):
    monkeypatch.setitem(app.config, "LIVE_HEARTBEAT_SECONDS", 0.3)
    monkeypatch.setitem(app.config, "LIVE_STREAM_SECONDS", 1.5)
    session = browser_session(served, world.agent)
    stream = Stream(session, "/live/stream")
    assert stream.status.get(timeout=10)[0] == 200
    assert stream.lines.get(timeout=5) == "retry: 2000"
    stream.wait_for(": heartbeat", timeout=3)
    assert stream.wait_for("<never>", timeout=5) < 5  # the server closed it: None arrived
    session.close()


def test_the_stream_of_an_inbox_carries_every_conversation_but_others_notifications(served, world):
    session = browser_session(served, world.manager)
    stream = Stream(session, "/live/stream")
    stream.wait_for(": connected")
    tickets.assign(ticket_of(world.conversation), world.agent.id, world.manager)
    db.session.commit()
    item = stream.next_event(where=lambda e: e["type"] != "presence")
    assert item["type"] == "ticket.updated" and item["assignee_id"] == world.agent.id
    receive(world.channel, world.contact.platform_id, "next")
    db.session.commit()
    assert stream.next_event(where=lambda e: e["type"] != "ticket.updated")["type"] == (
        "message.created"
    )  # the agent's notification went by without reaching the manager
    session.close()


def test_a_redis_that_is_down_never_fails_the_commit(app, world, monkeypatch):
    monkeypatch.setitem(app.config, "REDIS_URL", "redis://127.0.0.1:1/0")
    events.reset()
    try:
        started = time.monotonic()
        message = receive(world.channel, world.contact.platform_id, "stored anyway")
        db.session.commit()
        assert time.monotonic() - started < 5
        assert db.session.get(Message, message.id).status is MessageStatus.RECEIVED
    finally:
        events.reset()


# The live inbox -----------------------------------------------------------------------------------


def inbox_conversation(world: World, text: str, minutes_ago: float) -> int:
    """A followed contact's conversation in Primary, its last message `minutes_ago`."""
    person = known_contact(world.channel)
    at = utcnow() - timedelta(minutes=minutes_ago)
    return receive(world.channel, person.platform_id, text, at=at).conversation_id


def inbox_updates(client, shown=(), ids=(), **filters) -> dict:
    """What the live inbox asks after events: its page again, given what it shows and heard."""
    query = {**filters, "shown": ",".join(map(str, shown)), "ids": ",".join(map(str, ids))}
    response = client.get("/inbox/updates", query_string=query)
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    return response.json


def page_rows(client, path: str = "/inbox") -> dict[int, str]:
    """The inbox page's rows as it renders them, by conversation id, in page order."""
    page = client.get(path).get_data(as_text=True)
    found = re.findall(r'(<li class="row[^>]*data-conversation-id="(\d+)">.*?</li>)', page, re.S)
    return {int(conversation_id): row for row, conversation_id in found}


def test_a_new_message_redraws_its_row_as_the_page_does_and_moves_it_to_the_top(client, world):
    older = inbox_conversation(world, "Is the blue one back?", minutes_ago=10)
    oldest = inbox_conversation(world, "Hello?", minutes_ago=20)
    signed_in(client, world.agent)
    shown = list(page_rows(client))
    assert shown == [world.conversation.id, older, oldest]  # no clocks: the newest first

    receive(world.channel, db.session.get(Conversation, oldest).contact.platform_id, "Any news?")
    db.session.commit()
    answer = inbox_updates(client, shown=shown, ids=[oldest])
    assert answer["order"] == [oldest, world.conversation.id, older]
    assert list(answer["rows"]) == [str(oldest)]  # the others are shown and did not change
    assert "Any news?" in answer["rows"][str(oldest)]
    assert answer["rows"][str(oldest)] == page_rows(client)[oldest]  # drawn as the page draws it
    assert answer["folder_counts"] == {"primary": 3, "general": 0, "requests": 0, "hidden": 0}
    assert answer["view_counts"] == {"all": 3, "mine": 0, "unassigned": 3}


def test_a_conversation_that_newly_matches_the_view_is_drawn_at_its_place(client, world):
    older = inbox_conversation(world, "Sizes?", minutes_ago=10)
    signed_in(client, world.agent)
    newest = inbox_conversation(world, "Do you ship to Lisbon?", minutes_ago=0)
    db.session.commit()
    answer = inbox_updates(client, shown=[world.conversation.id, older])
    assert answer["order"] == [newest, world.conversation.id, older]
    assert list(answer["rows"]) == [str(newest)]  # not shown yet: drawn though nobody asked
    assert "Do you ship to Lisbon?" in answer["rows"][str(newest)]
    assert answer["folder_counts"]["primary"] == 3


def test_a_resolved_conversation_leaves_the_open_view_and_its_counts(client, world):
    other = inbox_conversation(world, "Refund please", minutes_ago=5)
    signed_in(client, world.agent)
    shown = [world.conversation.id, other]
    assert inbox_updates(client, shown=shown, status="open")["order"] == shown
    tickets.set_status(ticket_of(db.session.get(Conversation, other)), "resolved", world.agent)
    db.session.commit()
    answer = inbox_updates(client, shown=shown, ids=[other], status="open")
    assert answer["order"] == [world.conversation.id]
    assert answer["rows"] == {}
    assert answer["folder_counts"]["primary"] == 1
    resolved = inbox_updates(client, shown=[], ids=[other], status="resolved")
    assert resolved["order"] == [other] and "pill-resolved" in resolved["rows"][str(other)]


def test_a_conversation_assigned_away_leaves_unassigned_and_shows_its_assignee(client, world):
    other = inbox_conversation(world, "Where is it?", minutes_ago=5)
    signed_in(client, world.agent)
    shown = [world.conversation.id, other]
    assert inbox_updates(client, shown=shown, view="unassigned")["order"] == shown
    tickets.assign(ticket_of(db.session.get(Conversation, other)), world.manager.id, world.manager)
    db.session.commit()
    answer = inbox_updates(client, shown=shown, ids=[other], view="unassigned")
    assert answer["order"] == [world.conversation.id]
    assert answer["view_counts"] == {"all": 2, "mine": 0, "unassigned": 1}
    everyone = inbox_updates(client, shown=shown, ids=[other])
    assert everyone["order"] == shown
    assert world.manager.name in everyone["rows"][str(other)]


def test_a_folder_move_is_announced_and_moves_the_row_to_its_folder(client, world, backend):
    other = inbox_conversation(world, "Collab?", minutes_ago=5)
    db.session.commit()
    heard = Heard(world.brand.id, world.agent.id)
    dm.move_to_folder(db.session.get(Conversation, other), "general")
    db.session.commit()
    announced = [e for e in heard.events() if e["type"] == "conversation.updated"]
    assert [(e["conversation_id"], e["folder"]) for e in announced] == [(other, "general")]

    signed_in(client, world.agent)
    answer = inbox_updates(client, shown=[world.conversation.id, other], ids=[other])
    assert answer["order"] == [world.conversation.id]
    assert answer["folder_counts"]["primary"] == 1 and answer["folder_counts"]["general"] == 1
    general = inbox_updates(client, shown=[], ids=[other], folder="general")
    assert general["order"] == [other] and "Collab?" in general["rows"][str(other)]


def test_declined_and_blocked_requests_are_announced_and_leave_requests(client, world, backend):
    declined = receive(world.channel, ContactFactory(channel=world.channel).platform_id, "hi")
    blocked = receive(world.channel, ContactFactory(channel=world.channel).platform_id, "buy?")
    requests = [declined.conversation_id, blocked.conversation_id]
    db.session.commit()
    heard = Heard(world.brand.id, world.agent.id)
    inbox.decline(db.session.get(Conversation, requests[0]), world.agent)
    inbox.block(db.session.get(Conversation, requests[1]), world.agent)
    db.session.commit()
    announced = {
        (e["conversation_id"], e["request_state"])
        for e in heard.events()
        if e["type"] == "conversation.updated"
    }
    assert announced == {(requests[0], "declined"), (requests[1], "blocked")}

    signed_in(client, world.agent)
    answer = inbox_updates(client, shown=requests, ids=requests, folder="requests")
    assert answer["order"] == [] and answer["rows"] == {}
    assert answer["folder_counts"]["requests"] == 0


def test_a_tag_added_or_removed_is_announced_and_the_tag_view_follows(client, world, backend):
    from helpdesk.tickets import tags

    ticket = ticket_of(world.conversation)
    heard = Heard(world.brand.id, world.agent.id)
    tags.add_tag(ticket, "VIP", world.agent)
    db.session.commit()
    assert ("ticket.updated", ticket.id) in kinds(heard.events())
    signed_in(client, world.agent)
    answer = inbox_updates(client, shown=[], ids=[world.conversation.id], tag="VIP")
    assert answer["order"] == [world.conversation.id]
    assert ">VIP<" in answer["rows"][str(world.conversation.id)]
    tags.remove_tag(ticket, "VIP", world.agent)
    db.session.commit()
    assert ("ticket.updated", ticket.id) in kinds(heard.events())
    shown = [world.conversation.id]
    assert inbox_updates(client, shown=shown, ids=shown, tag="VIP")["order"] == []


def test_an_sla_warning_and_breach_are_announced_for_the_inbox_badge(world, backend):
    from helpdesk.sla import service as sla

    sla.create_policy(world.brand, None, "Fast", 0, {}, {"first_response_min": 10}, False)
    ticket = ticket_of(world.conversation)
    sla.refresh_ticket_sla(ticket, utcnow())
    db.session.commit()
    heard = Heard(world.brand.id, world.agent.id)
    sla.sweep_sla(utcnow() + timedelta(minutes=9))  # past the warning time
    db.session.commit()
    assert ("ticket.updated", ticket.id) in kinds(heard.events())
    sla.sweep_sla(utcnow() + timedelta(minutes=11))  # past the due time
    db.session.commit()
    assert ("ticket.updated", ticket.id) in kinds(heard.events())
    sla.sweep_sla(utcnow() + timedelta(minutes=12))  # nothing new to say
    db.session.commit()
    assert ("ticket.updated", ticket.id) not in kinds(heard.events())


def test_the_live_inbox_keeps_to_the_brand_and_the_role(client, world):
    other = World("other")
    assert client.get("/inbox/updates?ids=1").status_code == 401
    signed_in(client, world.agent)
    answer = inbox_updates(client, shown=[world.conversation.id], ids=[other.conversation.id])
    assert answer["order"] == [world.conversation.id] and answer["rows"] == {}
    assert client.get("/inbox/updates?folder=hidden").status_code == 403
    for query in ("ids=abc", "shown=1,²", "folder=attic", "ids=" + ",".join(["1"] * 201)):
        assert client.get(f"/inbox/updates?{query}").status_code == 400, query
