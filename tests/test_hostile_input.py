"""Hostile input (issue 7): whatever arrives, the app answers without a server error and writes
either a whole thing or nothing.

- The Instagram webhook: a hypothesis strategy builds bodies of every event kind docs/webhook.md
  lists, then breaks them (keys dropped or given the wrong type, nulls, huge strings, deep nesting,
  unicode with escaped surrogates, RTL and emoji, numbers out of range). Each is posted signed
  and processed as the worker would; the webhook never answers 5xx, processing never raises, and
  every message written is complete, with its conversation and contact.
- Console forms: oversized, empty and malformed values for every state-changing form are a flash
  or a 4xx, never a 5xx, and change nothing.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, event, example, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode
from sqlalchemy import func, select

from helpdesk.accounts import invitations
from helpdesk.accounts.actor import Actor
from helpdesk.accounts.service import create_team
from helpdesk.canned import service as canned
from helpdesk.channels.models import Channel
from helpdesk.channels.service import connect_channel
from helpdesk.dm import service as dm
from helpdesk.dm.models import (
    Contact,
    Conversation,
    ConversationKind,
    Direction,
    Message,
    Participant,
)
from helpdesk.extensions import db
from helpdesk.intake import instagram
from helpdesk.intake import service as intake
from helpdesk.intake.instagram import MalformedEvent
from helpdesk.intake.models import EventStatus, WebhookEvent
from helpdesk.notifications.models import NotificationKind
from helpdesk.notifications.service import notify
from helpdesk.tickets import notes
from helpdesk.tickets.models import Ticket
from tests.factories import BrandFactory
from tests.helpers.console import RecordingArgs, csrf_token, signed_in
from tests.helpers.fuzz import api_operations, real_id_cases
from tests.helpers.rows import changed, snapshot
from tests.helpers.webhooks import ACCOUNT, post
from tests.helpers.world import World

# Webhook bodies -----------------------------------------------------------------------------------

CUSTOMERS = ("6120000000000001", "6120000000000002", "6120000000000003")
MIDS = tuple(f"aWdfZAG1faXRlbToxOkhvc3RpbGU{n:02d}" for n in range(6))  # events name each other
ATTACHMENT_TYPES = (
    "image", "video", "audio", "file", "share", "ig_post", "ig_reel", "reel", "story_mention",
    "ig_story", "story", "ephemeral", "location", "product", "template", "fallback",
)  # fmt: skip
URLS = (
    "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=1&signature=abc",
    "https://media.example.test/cat.gif?x=1",
    "http://cdn.example.test/v.mp4",
    "javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "HTTPS://EXAMPLE.TEST/" + "a" * 3000,
)
UNICODE = (
    "مرحبا، أين طلبي؟",  # RTL
    "\u202eevil\u202c txt.exe",  # right-to-left override
    "👩‍👩‍👧‍👦🏳️‍🌈 emoji ZWJ",
    "e\u0301\u0301\u0301 combining",
    "\ud83d\ude00 a pair written as two escapes",
    "\ud800 a lone high surrogate",
    "\udfff a lone low surrogate",
    "nul \x00 byte",
    "<script>alert(1)</script>",
    "\u2028\u2029 line separators",
    "\ufeff\uffff\U0010ffff",
)
DEEP = "\u0001deep:"  # placeholder replaced by raw nesting after serialising (json.dumps recurses)

texts = st.one_of(st.text(max_size=60), st.sampled_from(UNICODE))
customers = st.sampled_from(CUSTOMERS)
mids = st.one_of(st.sampled_from(MIDS), st.text(min_size=1, max_size=40))
milliseconds = st.integers(1_600_000_000_000, 1_900_000_000_000)
timestamps = st.one_of(
    milliseconds,
    milliseconds.map(lambda ms: ms // 1000),  # seconds: below 10^12
    milliseconds.map(lambda ms: ms / 1000.0),
    milliseconds.map(str),
)


@st.composite
def attachments(draw) -> list[dict]:
    items = []
    for kind in draw(st.lists(st.sampled_from(ATTACHMENT_TYPES), min_size=1, max_size=3)):
        payload: dict[str, Any] = {}
        if kind != "ephemeral":
            payload["url"] = draw(st.sampled_from(URLS))
        if kind == "image" and draw(st.booleans()):
            payload["sticker_id"] = draw(st.integers(1, 10**16))
        if kind in ("share", "ig_post"):
            payload["ig_post_media_id"] = draw(st.sampled_from(["17900000000000001", "1790002"]))
            payload["title"] = draw(texts)
        if kind in ("ig_reel", "reel"):
            payload["reel_video_id"] = draw(st.sampled_from(["17800000000000001", "1780002"]))
        if kind in ("story_mention", "ig_story", "story"):
            payload["id"] = draw(st.sampled_from(["17949487764033669", "1"]))
        items.append({"type": kind, "payload": payload})
    if draw(st.booleans()):  # a shared post arrives as `share` and `ig_post` of the same media
        media = {"url": URLS[0], "ig_post_media_id": "17900000000000009", "title": "jacket"}
        items += [{"type": "share", "payload": media}, {"type": "ig_post", "payload": media}]
    return items


@st.composite
def message_events(draw) -> dict:
    message: dict[str, Any] = {"mid": draw(mids)}
    if draw(st.booleans()):
        message["text"] = draw(texts)
    if draw(st.booleans()) or "text" not in message:
        message["attachments"] = draw(attachments())
    reply = draw(st.sampled_from(["none", "mid", "story"]))
    if reply == "mid":
        message["reply_to"] = {"mid": draw(mids)}
    elif reply == "story":
        message["reply_to"] = {"story": {"url": URLS[0], "id": "17949487764033669"}}
    if draw(st.booleans()):
        message["quick_reply"] = {"payload": draw(texts)}
    if draw(st.booleans()):
        message["referral"] = {"ref": draw(texts), "source": "ADS", "type": "OPEN_THREAD"}
    if draw(st.booleans()):
        message["is_unsupported"] = True
    return {"message": message}


@st.composite
def echo_events(draw) -> dict:
    event = draw(message_events())
    event["message"].update(is_echo=True, app_id=draw(st.integers(1, 10**17)))
    return event


simple_events = st.one_of(
    st.builds(lambda m: {"message": {"mid": m, "is_deleted": True}}, mids),
    st.builds(
        lambda m, t, n: {"message_edit": {"mid": m, "text": t, "num_edit": n}},
        mids,
        texts,
        st.integers(1, 5),
    ),
    st.builds(
        lambda m, action, name, emoji: {
            "reaction": {"mid": m, "action": action, "reaction": name, "emoji": emoji}
        },
        mids,
        st.sampled_from(["react", "unreact"]),
        st.sampled_from(["love", "like", "wow", "other", "unknown"]),
        st.sampled_from(["❤️", "😂", "👍🏽"]),
    ),
    st.builds(lambda m: {"read": {"mid": m}}, mids),
    st.builds(
        lambda m, title, payload: {"postback": {"mid": m, "title": title, "payload": payload}},
        mids,
        texts,
        st.sampled_from(["TRACK_ORDER", "GET_STARTED"]),
    ),
    st.builds(
        lambda ref: {"referral": {"ref": ref, "source": "SHORTLINK", "type": "OPEN_THREAD"}},
        texts,
    ),
)


@st.composite
def events(draw) -> dict:
    payload = draw(st.one_of(message_events(), echo_events(), simple_events))
    customer = draw(customers)
    echo = payload.get("message", {}).get("is_echo")
    sender, recipient = (ACCOUNT, customer) if echo else (customer, ACCOUNT)
    return {
        "sender": {"id": sender},
        "recipient": {"id": recipient},
        "timestamp": draw(timestamps),
        **payload,
    }


@st.composite
def entries(draw) -> dict:
    shape = draw(st.sampled_from(["messaging", "standby", "changes"]))
    items = draw(st.lists(events(), min_size=1, max_size=4))
    account = draw(st.sampled_from([ACCOUNT] * 7 + ["17841499999999999"]))
    entry: dict[str, Any] = {"id": account, "time": draw(milliseconds)}
    if shape == "changes":
        entry["changes"] = [{"field": "messages", "value": item} for item in items]
    else:
        entry[shape] = items
    return entry


@st.composite
def bodies(draw) -> Any:
    found = draw(st.lists(entries(), min_size=1, max_size=3))
    shape = draw(st.sampled_from(["object", "object", "list of bodies", "list of entries"]))
    if shape == "list of bodies":
        return [{"object": "instagram", "entry": found}]
    if shape == "list of entries":
        return found
    return {"object": "instagram", "entry": found}


# Breaking them ------------------------------------------------------------------------------------

big_numbers = st.sampled_from(
    [-1, 0, 2**31, 2**63, 2**70, -(2**70), 10**20, 10**400, 1e308, -1e308, 5e-324]
)
huge_strings = st.builds(
    lambda unit, count: unit * count,
    st.sampled_from(["x", "é", "😀", "\u202e", "\x00", "\ud800", "word "]),
    st.sampled_from([256, 4_000, 70_000, 250_000]),
)
deep_nesting = st.builds(
    lambda depth, kind: f"{DEEP}{depth}:{kind}",
    st.sampled_from([40, 900, 5_000, 300_000]),
    st.sampled_from(["[", "{"]),
)
hostile_values = st.one_of(
    st.none(),
    st.booleans(),
    big_numbers,
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.sampled_from(UNICODE),
    huge_strings,
    deep_nesting,
    st.just([]),
    st.just({}),
    st.lists(st.one_of(st.none(), st.integers(), st.text(max_size=5)), max_size=3),
)


def _paths(value: Any, path: tuple = ()) -> list[tuple]:
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*path, index))
    return found


def _replace(tree: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    parent = tree
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = new
    return tree


@st.composite
def broken(draw, tree: Any) -> Any:
    """Up to four breakages anywhere in the tree (none: the valid body itself)."""
    for _ in range(draw(st.integers(0, 4))):
        paths = _paths(tree)
        path = draw(st.sampled_from(paths))
        operation = draw(st.sampled_from(["replace", "replace", "drop", "add", "wrap"]))
        if operation == "drop" and path:
            parent = tree
            for step in path[:-1]:
                parent = parent[step]
            del parent[path[-1]]
        elif operation == "add":
            target = tree
            for step in path:
                target = target[step]
            if isinstance(target, dict):
                target[draw(st.sampled_from(["extra", "mid", "is_echo", "is_deleted"]))] = draw(
                    hostile_values
                )
            elif isinstance(target, list):
                target.append(draw(hostile_values))
        elif operation == "wrap":
            target = tree
            for step in path:
                target = target[step]
            tree = _replace(tree, path, [target])
        else:
            tree = _replace(tree, path, draw(hostile_values))
    return tree


def _deepen(raw: str) -> str:
    """The placeholder strings become raw nesting that no JSON encoder would write for us."""

    def nest(match: re.Match) -> str:
        depth, kind = int(match.group(1)), match.group(2)
        opening, closing = ("[", "]") if kind == "[" else ('{"a":', "}")
        return opening * depth + "1" + closing * depth

    return re.sub(r'"\\u0001deep:(\d+):([\[{])"', nest, raw)


@st.composite
def raw_bodies(draw) -> bytes:
    tree = draw(bodies().flatmap(broken))
    ascii_only = draw(st.booleans())
    raw = json.dumps(tree, ensure_ascii=True)  # the placeholders' \u0001 stays escaped
    raw = _deepen(raw)
    if not ascii_only:
        # Unescape everything but control characters, quotes, backslashes and lone surrogates.
        raw = json.dumps(tree, ensure_ascii=False)
        raw = _deepen(raw.replace(DEEP, "\\u0001deep:"))
        try:
            return raw.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: only the escaped form is valid UTF-8
            raw = _deepen(json.dumps(tree, ensure_ascii=True))
    return raw.encode("ascii")


# What must hold after every delivery --------------------------------------------------------------

STORED = (EventStatus.PROCESSED, EventStatus.UNKNOWN_ACCOUNT, EventStatus.FAILED)
NEW_MESSAGE_EVENTS = ("message", "postback", "echo")


def _expected_mids(body: Any) -> list[str]:
    """The mids that must be stored unless the delivery reports a problem."""
    expected = []
    for entry in instagram.entries(body):
        if str(entry.get("id", ""))[:64] != ACCOUNT:
            continue
        for raw in instagram.raw_events(entry):
            try:
                event = instagram.parse_event(ACCOUNT, raw)
            except MalformedEvent:
                continue
            if event.type in NEW_MESSAGE_EVENTS:
                expected.append(event.mid)
    return expected


def assert_whole_rows(channel_id: int) -> None:
    """No partial write: every message has its conversation and contact, every conversation its
    first message, participants and ticket; nothing refers to a row that is not there."""
    db.session.expire_all()
    conversations = {c.id: c for c in db.session.scalars(select(Conversation))}
    contacts = {c.id: c for c in db.session.scalars(select(Contact))}
    tickets = {t.id: t for t in db.session.scalars(select(Ticket))}
    messages_per_conversation: dict[int, int] = {}
    for message in db.session.scalars(select(Message)):
        where = f"message {message.id} ({message.mid!r})"
        assert message.channel_id == channel_id, where
        assert message.mid and message.sent_at is not None, where
        conversation = conversations.get(message.conversation_id)
        assert conversation is not None, where
        assert conversation.brand_id == message.brand_id, where
        assert conversation.channel_id == message.channel_id, where
        contact = contacts.get(message.contact_id)
        assert contact is not None and contact.channel_id == channel_id, where
        if message.direction is Direction.INBOUND:
            assert not message.is_echo, where
        assert isinstance(message.attachments, list) and isinstance(message.extra, dict), where
        for attachment in message.attachments:
            url = attachment.get("url")
            assert url is None or url.lower().startswith(("http://", "https://")), where
        messages_per_conversation[conversation.id] = (
            messages_per_conversation.get(conversation.id, 0) + 1
        )
    for conversation in conversations.values():
        where = f"conversation {conversation.id}"
        assert messages_per_conversation.get(conversation.id), f"{where} has no message"
        assert conversation.kind is ConversationKind.DIRECT, where
        assert conversation.contact_id in contacts, where
        seats = db.session.scalars(
            select(Participant.contact_id).where(Participant.conversation_id == conversation.id)
        ).all()
        assert sorted(seats, key=str) == sorted([None, conversation.contact_id], key=str), where
        if conversation.current_ticket_id is not None:
            ticket = tickets.get(conversation.current_ticket_id)
            assert ticket is not None and ticket.conversation_id == conversation.id, where


def deliver_and_process(client, raw: bytes) -> WebhookEvent | None:
    """Post signed; when stored, process it as the worker does. Fails on a 5xx or a raise."""
    db.session.rollback()
    last = db.session.scalar(select(func.max(WebhookEvent.id))) or 0
    response = post(client, raw)
    assert response.status_code < 500, (response.status_code, response.get_data()[:300])
    db.session.rollback()
    pending = db.session.scalars(select(WebhookEvent.id).where(WebhookEvent.id > last)).all()
    if response.status_code != 200:
        assert response.status_code in (400, 413), response.status_code
        assert response.json["error"]["code"] == (
            "too_large" if response.status_code == 413 else "bad_json"
        )
        assert pending == [], "a refused delivery was stored"
        event(f"refused {response.status_code}")
        return None
    assert len(pending) == 1
    event("stored")
    try:
        intake.process_event(pending[0])
        db.session.commit()
    except Exception as exc:  # the property under test: processing never raises out
        db.session.rollback()
        pytest.fail(f"processing raised {type(exc).__name__}: {str(exc)[:500]}")
    db.session.expire_all()
    return db.session.get(WebhookEvent, pending[0])


@pytest.fixture
def instagram_channel() -> Channel:
    channel = connect_channel(BrandFactory(), "instagram", ACCOUNT, "page-token")
    db.session.commit()
    return channel


API_FUZZ = settings(
    max_examples=10,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # the channel is meant to outlive each example
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)


MANY_WORDS = " ".join(f"w{n:x}" for n in range(110_000))  # past PostgreSQL's tsvector size limit


def _body(*events: dict) -> bytes:
    entry = {"id": ACCOUNT, "time": 1763800000000, "messaging": list(events)}
    return json.dumps({"object": "instagram", "entry": [entry]}).encode()


def _event(payload: dict) -> dict:
    sender = {"id": CUSTOMERS[0]}
    return {"sender": sender, "recipient": {"id": ACCOUNT}, "timestamp": 1763800000000, **payload}


@FUZZ
@given(raw=raw_bodies())
@example(raw=_body(_event({"message": {"mid": "nul", "text": "a\x00b"}})))
@example(raw=_body(_event({"message": {"mid": "lone", "text": "\ud800"}})))
@example(raw=_body(_event({"message": {"mid": "m" * 300, "text": "long mid"}})))
@example(raw=_body(_event({"message": {"mid": "q", "reply_to": {"mid": "r" * 300}}})))
@example(raw=_body({**_event({"message": {"mid": "s"}}), "sender": {"id": "\x00"}}))
@example(raw=_body(_event({"message": {"mid": "x", "quick_reply": {"payload": "\x00"}}})))
@example(raw=_body(_event({"message": {"mid": "t", "attachments": [{"type": "\x00"}]}})))
@example(raw=_body(_event({"message": {"mid": "u", "text": "w" * 200 + "\x00"}})))
@example(raw=_body(_event({"reaction": {"mid": "z", "action": "react", "emoji": "\ud83d"}})))
@example(raw=_body(_event({"message": {"mid": "words", "text": MANY_WORDS}})))
@example(raw=b'{"object": "instagram", "entry": [{"id": "\\u0000", "messaging": []}]}')
@example(raw=b'{"object": "instagram", "entry": [{"id": "\\ud800", "messaging": []}]}')
@example(raw=b'{"entry": [{"id": ' + b"[" * 5000 + b"]" * 5000 + b"}]}")
@example(raw=b"[" * 100_000 + b"]" * 100_000)
@example(raw=b'{"entry": [{"id": "17841400000000001", "messaging": [{"timestamp": NaN}]}]}')
@example(raw=b'{"entry": [{"id": "17841400000000001", "time": Infinity}]}')
@pytest.mark.slow
def test_no_webhook_body_makes_a_server_error_or_a_partial_write(client, instagram_channel, raw):
    db.session.rollback()
    row = deliver_and_process(client, raw)
    if row is not None:
        assert row.status in STORED, row.status
        missing = [
            mid
            for mid in _expected_mids(json.loads(row.body))
            if dm.message_by_mid(instagram_channel.id, mid) is None
        ]
        assert not missing or row.error, f"dropped without a reported problem: {missing}"
        event(f"{row.status.value}, {'problems reported' if row.error else 'no problem'}")
        event(f"new messages expected: {min(len(_expected_mids(json.loads(row.body))), 3)}")
    assert_whole_rows(instagram_channel.id)


@FUZZ
@given(raw=bodies().map(lambda body: json.dumps(body).encode()))
@pytest.mark.slow
def test_every_valid_body_is_stored_whole(client, instagram_channel, raw):
    """Unbroken bodies of every event type: each message event is stored, nothing reported."""
    db.session.rollback()
    row = deliver_and_process(client, raw)
    assert row is not None and row.status in (EventStatus.PROCESSED, EventStatus.UNKNOWN_ACCOUNT)
    missing = [
        mid
        for mid in _expected_mids(json.loads(row.body))
        if dm.message_by_mid(instagram_channel.id, mid) is None
    ]
    assert not missing, (missing, row.error)
    assert_whole_rows(instagram_channel.id)


# Console forms ------------------------------------------------------------------------------------

MEGABYTE = "x" * (1024 * 1024)  # over the request limit: 413
LONG = "y" * 100_000  # under it: the form's own limits must refuse it
MALFORMED = (
    "",
    "   ",
    LONG,
    "nul\x00byte",
    "²",  # str.isdigit() says yes, int() says no
    "٣",  # an Arabic-Indic three: int() reads it
    "-1",
    "99999999999999999999999",
    "1e3",
    "<script>alert(1)</script>",
    "bogus",
)
BLANK_OR_HUGE = ("", "   ", LONG, "nul\x00byte")
# Too short, too long, a NUL, or among the common passwords (whatever the case).
WEAK_PASSWORDS = tuple(v for v in MALFORMED if not 10 <= len(v) <= 200) + (
    "Password123",
    "QWERTYUIOP",
    " " * 12,
)
GOOD_PASSWORD = "a quiet harbour at dawn"
BAD_TIMES = ("0001-01-01T00:00", "2026-02-30T10:00", "9999-99-99T99:99", "tomorrow", "1e9", LONG)


class Desk:
    """A brand with an open ticket, a team, a notification and a message to react to; the admin
    is signed in (so no role stands between a form and its validation)."""

    def __init__(self, client):
        self.world = World("hostile")
        self.team = create_team(self.world.brand, "Tier 1")
        self.reply = canned.create(
            self.world.brand, self.world.admin, "thanks", "Thanks", "Thanks!", shared=True
        )
        self.notification = notify(
            self.world.admin.id,
            self.world.brand.id,
            NotificationKind.MENTION,
            "You were mentioned",
            conversation_id=self.world.conversation.id,
        )
        db.session.commit()
        self.client = signed_in(client, self.world.admin)
        assert client.get(f"/conversations/{self.world.conversation.id}").status_code == 200
        note = notes.add_note(
            db.session.get(Ticket, self.world.conversation.current_ticket_id),
            self.world.admin,
            "Checked",
        )
        db.session.commit()
        self.ids = {
            "conversation_id": self.world.conversation.id,
            "message_id": self.world.message.id,
            "notification_id": self.notification.id,
            "reply_id": self.reply.id,
            "note_id": note.id,
            "contact_id": self.world.contact.id,
            "media_id": 1,
            "invitation_token": invitations.invite(
                Actor.system(self.world.brand.id), self.world.brand, "invited@example.test"
            )[1],
            "reset_token": invitations.start_reset(self.world.agent.email)[1],
        }
        db.session.commit()

    def url(self, rule) -> str:
        path = rule.rule
        for name in rule.arguments:
            path = path.replace(f"<int:{name}>", str(self.ids[name]))
            path = path.replace(f"<{name}>", str(self.ids[name]))
        return path


def _form_cases(desk: Desk) -> dict[str, list[dict[str, str]]]:
    """For each state-changing console form, values it must refuse; the other fields of a case
    are valid, so that it is the hostile one that is refused."""
    conversation = str(desk.world.conversation.id)
    ids_ok = {"ids": conversation}
    no_value = [v for v in MALFORMED if v.strip()]  # where empty means "none" or "default"
    return {
        "console.availability": [{"availability": v} for v in MALFORMED],
        "console.switch_brand": [{"brand_id": v} for v in MALFORMED],
        "console.assign": [{"assignee_id": v} for v in no_value],
        "console.team": [{"team_id": v} for v in no_value],
        "console.block_contact": [{"contact_id": v} for v in no_value],
        "console.unblock_contact": [{"contact_id": v} for v in no_value],
        "console.move": [{"folder": v} for v in MALFORMED] + [{"folder": "requests"}],
        "console.notification_level": [{"level": v} for v in MALFORMED],
        "console.priority": [{"priority": v} for v in MALFORMED] + [{"priority": "URGENT"}],
        "console.status": [{"status": v} for v in MALFORMED]
        + [{"status": "snoozed", "snooze_until": v} for v in BAD_TIMES]
        + [{"status": "snoozed", "snooze": v} for v in MALFORMED]
        + [{"status": "resolved", "ticket_state": v} for v in no_value],
        "console.request_action": [{"action": v} for v in MALFORMED],
        "console.presence": [{"state": v} for v in MALFORMED],
        "console.add_tag": [{"name": v} for v in ("", "   ", LONG, "nul\x00byte")],
        "console.remove_tag": [{"name": v} for v in MALFORMED],
        "console.note": [{"text": v} for v in ("", "   ", LONG, "nul\x00byte")],
        "console.react": [{"emoji": v} for v in no_value if v != "٣"],
        "console.reply": [{"text": v} for v in ("", "   ", LONG, "nul\x00byte")]
        + [{"text": "hi", "reply_to": v} for v in no_value]
        + [{"text": "hi", "send_at": v} for v in BAD_TIMES]
        + [{"attachment_type": "image", "attachment_url": v} for v in no_value]
        + [{"attachment_type": v, "attachment_url": "javascript:alert(1)"} for v in MALFORMED]
        + [{"text": "hi", "last_seen_message_id": v} for v in no_value]
        + [{"text": v} for v in ("/", "/\r\n", "{{ contact.first_name }}", "x" * 1001)],
        "console.bulk_action": [{"ids": v, "bulk_action": "resolve"} for v in MALFORMED]
        + [{**ids_ok, "bulk_action": v} for v in MALFORMED]
        + [{**ids_ok, "bulk_action": "assign", "assignee_id": v} for v in no_value]
        + [{**ids_ok, "bulk_action": "tag", "tag": v} for v in ("", "   ", LONG, "nul\x00byte")],
        "console.contact_save": [{"name": v} for v in (LONG, "nul\x00byte")]
        + [{"notes": v} for v in (LONG, "nul\x00byte")]
        + [{"attr_rows": v} for v in MALFORMED]
        + [{"attr_rows": "1", "attr_key_0": v, "attr_value_0": "x"} for v in BLANK_OR_HUGE]
        + [{"attr_rows": "1", "attr_key_0": "plan", "attr_value_0": v} for v in (LONG, "nul\x00")],
        "console.contact_erase": [{"confirm": v} for v in MALFORMED],
        "auth.invitation": [{"name": v, "password": GOOD_PASSWORD} for v in BLANK_OR_HUGE]
        + [{"name": "Nina Berg", "password": v} for v in WEAK_PASSWORDS],
        "auth.password_reset": [{"password": v} for v in WEAK_PASSWORDS],
    }


# Forms without fields: their one action is valid whatever is sent, so there is nothing to refuse.
NO_FIELDS = {
    "console.take",
    "console.unassign",
    "console.leave",
    "console.reveal_vanish",
    "console.confirm_vanish_read",
    "console.notification_read",
    "console.notifications_read_all",
    "auth.logout",
    "auth.login",  # signed-out: its own test below
}


def _flashed_error(client) -> bool:
    with client.session_transaction() as session:
        return any(category == "error" for category, _ in session.get("_flashes", []))


@pytest.mark.slow
def test_every_console_form_refuses_oversized_empty_and_malformed_values(app, client):
    desk = Desk(client)
    cases = _form_cases(desk)
    post_rules = {
        rule.endpoint: rule
        for rule in app.url_map.iter_rules()
        if "POST" in rule.methods and rule.endpoint.startswith(("console.", "auth."))
    }
    assert set(post_rules) == set(cases) | NO_FIELDS, "give every new console form its cases"
    token = csrf_token(client, "/inbox")
    failures = []
    for endpoint, values in cases.items():
        url = desk.url(post_rules[endpoint])
        for form in values:
            before = snapshot()
            shown = {k: (v[:30] + f"...({len(v)})" if len(v) > 30 else v) for k, v in form.items()}
            try:
                response = client.post(url, data={"csrf_token": token, **form})
            except Exception as exc:  # a server error, raised by the test client
                db.session.rollback()
                failures.append(f"{endpoint} {shown}: raised {type(exc).__name__}: {exc}"[:300])
                continue
            status = response.status_code
            refused = 400 <= status < 500 or (status == 302 and _flashed_error(client))
            difference = changed(before, snapshot())
            if status >= 500 or not refused or difference:
                failures.append(f"{endpoint} {shown}: {status} changed={difference}")
            client.get("/inbox")  # take the flashes
    assert not failures, "\n".join(failures)


def test_a_form_over_the_size_limit_is_413_and_changes_nothing(client):
    desk = Desk(client)
    token = csrf_token(client, "/inbox")
    before = snapshot()
    conversation = desk.world.conversation.id
    for path, field in (
        (f"/conversations/{conversation}/reply", "text"),
        (f"/conversations/{conversation}/note", "text"),
        (f"/conversations/{conversation}/tags", "name"),
        ("/inbox/bulk", "tag"),
    ):
        response = client.post(path, data={"csrf_token": token, field: MEGABYTE})
        assert response.status_code == 413, path
    assert changed(before, snapshot()) == {}
    assert client.get("/inbox").status_code == 200  # still signed in


@pytest.mark.parametrize(
    ("email", "password"),
    [
        ("", ""),
        ("   ", "   "),
        (LONG, "x"),
        ("agent@example.test", LONG),
        ("nul\x00@example.test", "nul\x00"),
        ("<script>@example.test", "x"),
        ("²", "٣"),
    ],
)
def test_sign_in_with_malformed_values_is_refused_without_a_server_error(client, email, password):
    World("signin")
    response = client.post(
        "/login", data={"csrf_token": csrf_token(client), "email": email, "password": password}
    )
    assert response.status_code in (400, 401)  # 400: a NUL is refused before any lookup
    assert client.get("/inbox").status_code == 302
    big = client.post(
        "/login", data={"csrf_token": csrf_token(client), "email": "a@b.c", "password": MEGABYTE}
    )
    assert big.status_code == 413


HOSTILE_ARGS = (
    "", "²", "-1", "0", "99999999999999999999999", "4611686018427387904", "nul\x00byte", LONG,
    "0001-01-01", "9999-12-31", "2026-13-01", "0001-01-01T00:00:00+14:00", "team:99999999999999",
    "team:4611686018427387904", "team:²", "hidden", "//evil.example/", "javascript:alert(1)",
)  # fmt: skip


def _get_rules(app) -> list:
    return sorted(
        (
            rule
            for rule in app.url_map.iter_rules()
            if "GET" in rule.methods
            and rule.endpoint.startswith(("console.", "dashboard.", "auth."))
            and not rule.endpoint.endswith("_stream")  # a stream: held open, not a page
        ),
        key=lambda rule: rule.rule,
    )


@pytest.mark.slow
def test_no_query_argument_makes_a_console_page_fail(app, client, monkeypatch):
    """Every GET page of the console and the dashboard, each argument it reads given each
    hostile value: a page or a 4xx, never a 5xx. The arguments are found by asking the page."""
    desk = Desk(client)
    monkeypatch.setattr(app.request_class, "parameter_storage_class", RecordingArgs)
    failures = []
    probed = 0
    for rule in _get_rules(app):
        url = desk.url(rule)
        RecordingArgs.asked = set()
        assert client.get(url).status_code < 500, url
        for name in sorted(RecordingArgs.asked):
            for value in HOSTILE_ARGS:
                probed += 1
                try:
                    response = client.get(url, query_string={name: value})
                except Exception as exc:  # a server error, raised by the test client
                    db.session.rollback()
                    failures.append(f"{url}?{name}={value[:30]!r}: {type(exc).__name__}: {exc}")
                    continue
                if response.status_code >= 500:
                    failures.append(f"{url}?{name}={value[:30]!r}: {response.status_code}")
                elif response.status_code in (301, 302, 303):
                    location = response.headers["Location"]
                    if not location.startswith("/") or location.startswith("//"):
                        failures.append(f"{url}?{name}={value[:30]!r}: to {location}")
    assert probed > 100
    assert not failures, "\n".join(failures)


def test_ids_past_the_integer_columns_are_not_found(app, client):
    """`<int:...>` takes any number of digits; none of them may reach the database."""
    Desk(client)
    token = csrf_token(client, "/inbox")
    failures = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith(("console.", "dashboard.")) or not rule.arguments:
            continue
        for huge in (2**31, 10**30):
            path = rule.rule
            for name in rule.arguments:
                path = path.replace(f"<int:{name}>", str(huge))
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                try:
                    response = client.open(path, method=method, data={"csrf_token": token})
                except Exception as exc:
                    db.session.rollback()
                    failures.append(f"{method} {path}: {type(exc).__name__}")
                    continue
                if response.status_code != 404:
                    failures.append(f"{method} {path}: {response.status_code}")
    assert not failures, "\n".join(failures)


QUERY_ARGS = (
    "folder", "view", "status", "tag", "priority", "sla", "channel", "sort", "dir", "page",
    "before", "after", "reply_to", "since", "q", "conversation_id", "conversation", "from", "to",
    "business_hours", "table", "next", "state",
)  # fmt: skip
query_values = st.one_of(
    st.sampled_from(MALFORMED),
    st.sampled_from(HOSTILE_ARGS),
    st.text(max_size=20),
)


@pytest.fixture
def get_desk(client) -> Desk:
    return Desk(client)


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_no_mix_of_query_arguments_makes_a_console_page_fail(app, get_desk, data):
    """Several hostile arguments at once, on any GET page of the console and the dashboard."""
    rule = data.draw(st.sampled_from(_get_rules(app)))
    args = data.draw(st.dictionaries(st.sampled_from(QUERY_ARGS), query_values, max_size=4))
    response = get_desk.client.get(get_desk.url(rule), query_string=args)
    assert response.status_code < 500, (rule.rule, args, response.status_code)
    if response.status_code == 302:
        assert response.headers["Location"].startswith("/"), response.headers["Location"]


# The API: refused means unchanged ---------------------------------------------------------------

# Columns a refused API call may still write: when the token was last used (at most once a minute).
API_VOLATILE = {("api_tokens", "last_used_at")}


@pytest.mark.slow
def test_no_refused_api_call_leaves_a_partial_write(app, request):
    """test_api_fuzz.py drives every operation for server errors; here every answer of 400 and
    above must leave every row as it was: a service that wrote half before refusing shows."""
    desk = request.getfixturevalue("seeded")  # test_api_fuzz.py's brand, rows and token
    headers = {"Authorization": f"Bearer {desk['token']}"}
    operations = api_operations(app)
    failures: list[str] = []
    refused: list[int] = []

    def check(case: Any) -> None:
        before = snapshot(API_VOLATILE)
        response = case.call(headers=headers)
        if response.status_code >= 400:
            refused.append(response.status_code)
            difference = changed(before, snapshot(API_VOLATILE))
            if difference:
                failures.append(
                    f"{case.method} {case.formatted_path} body={str(case.body)[:200]} -> "
                    f"{response.status_code} {response.text[:200]} changed {difference}"
                )
                raise AssertionError(failures[-1])

    for operation in operations:
        if operation.method.upper() == "GET":
            continue  # reads: test_api_fuzz.py covers them
        for strategy in (
            real_id_cases(operation, desk["ids"]),
            real_id_cases(operation, desk["ids"], generation_mode=GenerationMode.NEGATIVE),
        ):
            try:
                API_FUZZ(given(case=strategy)(check))()
            except (AssertionError, Unsatisfiable):
                pass  # recorded, or nothing invalid to send
    assert len(refused) > 100 and {400, 404, 422} <= set(refused), sorted(set(refused))
    assert not failures, "\n".join(dict.fromkeys(failures))
