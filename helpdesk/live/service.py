"""Reading live updates: who may see an event, the poll over `live_events`, the Redis
subscription behind the event stream, and presence (viewing, typing) on a conversation."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from redis import Redis
from redis.client import PubSub
from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from helpdesk.accounts.models import Agent
from helpdesk.dm.models import Conversation, RequestState
from helpdesk.extensions import db
from helpdesk.live import events
from helpdesk.live.models import LiveEvent, Presence
from helpdesk.types import utcnow

PRESENCE_SECONDS = 15  # a page that stops saying "still here" disappears after this
TYPING_SECONDS = 6  # "is typing" lapses this long after the last keystroke's heartbeat
POLL_LIMIT = 200
# On PostgreSQL a transaction may commit after one holding a higher id: the cursor does not pass
# a gap younger than this, and the page drops the events it already had.
SETTLE = timedelta(seconds=5)
RETENTION = timedelta(minutes=30)
PRUNE_CHANCE = 0.05


@dataclass(frozen=True)
class Audience:
    """Whose console asks: events for other agents, hidden requests (admins only) and, on a
    conversation page, other conversations' events are left out."""

    agent_id: int
    admin: bool
    conversation_id: int | None = None

    def sees(self, item: dict) -> bool:
        if item.get("for_agent") not in (None, self.agent_id):
            return False
        if item.get("admin_only") and not self.admin:
            return False
        if item.get("type") == events.PRESENCE and item.get("agent_id") == self.agent_id:
            return False
        if self.conversation_id is None or item.get("type") == events.NOTIFICATION_CREATED:
            return True
        return item.get("conversation_id") == self.conversation_id


# Polling (embedded default) -------------------------------------------------------------------


def cursor_now(brand_id: int) -> int:
    """Where a page rendered now starts polling from: a position in the events of every brand,
    so that another brand's events never look like a gap."""
    if events.streaming():
        return 0
    return db.session.scalar(select(func.coalesce(func.max(LiveEvent.id), 0)))


def poll(brand_id: int, cursor: int, audience: Audience) -> tuple[int, list[dict]]:
    """The brand's events after `cursor` that this audience may see, and the next cursor."""
    if events.streaming():
        return cursor, []
    rows = db.session.execute(
        select(LiveEvent.id, LiveEvent.brand_id, LiveEvent.data, LiveEvent.created_at)
        .where(LiveEvent.id > cursor)
        .order_by(LiveEvent.id)
        .limit(POLL_LIMIT)
    ).all()
    # SQLite has one writer at a time: an id it shows was never overtaken by a slower one.
    overtaken = db.session.get_bind().dialect.name == "postgresql"
    settled_before = utcnow() - SETTLE
    next_cursor, held = cursor, False
    found = []
    for event_id, event_brand_id, data, created_at in rows:
        # Hold the cursor at a gap that a slower transaction may still fill; what lies beyond
        # is shown now and again next time (the page drops repeats by id).
        gap = event_id != next_cursor + 1 and created_at > settled_before
        held = held or (overtaken and gap)
        if not held:
            next_cursor = event_id
        if event_brand_id == brand_id and audience.sees(data):
            found.append({**data, "id": event_id})
    return next_cursor, found


def prune(now: datetime | None = None) -> None:
    """Old events and stale presence rows go; a page away that long reloads anyway."""
    now = now or utcnow()
    db.session.execute(delete(LiveEvent).where(LiveEvent.created_at < now - RETENTION))
    db.session.execute(
        delete(Presence).where(Presence.viewing_until < now - timedelta(seconds=PRESENCE_SECONDS))
    )


# Streaming (Redis) ------------------------------------------------------------------------------


class Subscription:
    """The brand's channel, subscribed before the response starts, so nothing published after
    the stream was opened is missed; iterate `events()` to read it."""

    def __init__(self, client: Redis, brand_id: int, timeout: float = 5.0):
        self._pubsub: PubSub = client.pubsub()
        self._pubsub.subscribe(events.channel(client, brand_id))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self._pubsub.get_message(timeout=0.5)
            if message is not None and message["type"] == "subscribe":
                return
        self.close()
        raise ConnectionError("Redis did not confirm the subscription")

    def events(
        self, audience: Audience, lifetime: float, heartbeat: float
    ) -> Iterator[dict | None]:
        """Events this audience may see; None every `heartbeat` seconds (keep the connection
        open through proxies); ends after `lifetime`, and the browser reconnects."""
        deadline = time.monotonic() + lifetime
        beat = time.monotonic()
        try:
            while (left := deadline - time.monotonic()) > 0:
                message = self._pubsub.get_message(timeout=min(1.0, left))
                if message is not None and message["type"] == "message":
                    item = json.loads(message["data"])
                    if audience.sees(item):
                        yield item
                if time.monotonic() - beat >= heartbeat:
                    beat = time.monotonic()
                    yield None
        finally:
            self.close()

    def close(self) -> None:
        self._pubsub.close()


def subscribe(brand_id: int) -> Subscription:
    client = events.redis_client()
    if client is None:
        raise RuntimeError("streaming needs REDIS_URL")
    return Subscription(client, brand_id)


# Presence ---------------------------------------------------------------------------------------


def _presence_key(conversation_id: int) -> str:
    return f"helpdesk:live:presence:{conversation_id}"


def heartbeat(
    conversation: Conversation, agent: Agent, typing: bool = False, now: datetime | None = None
) -> None:
    """The agent has the conversation open (and is typing in its reply box); the caller commits.

    A plain "viewing" beat keeps an earlier "typing" until it lapses on its own.
    """
    now = now or utcnow()
    viewing_until = now + timedelta(seconds=PRESENCE_SECONDS)
    typing_until = now + timedelta(seconds=TYPING_SECONDS) if typing else None
    client = events.redis_client()
    if client is None:
        _store_presence(conversation, agent, viewing_until, typing_until)
        if random.random() < PRUNE_CHANCE:
            prune(now)
        return
    key = _presence_key(conversation.id)
    field = str(agent.id)
    if typing_until is None:
        previous = client.hget(key, field)
        kept = json.loads(previous).get("typing_until") if previous else None
        typing_at = kept if kept and kept > now.timestamp() else None
    else:
        typing_at = typing_until.timestamp()
    entry = {
        "name": agent.name,
        "viewing_until": viewing_until.timestamp(),
        "typing_until": typing_at,
    }
    with client.pipeline() as pipe:
        pipe.hset(key, field, json.dumps(entry))
        pipe.expire(key, PRESENCE_SECONDS)
        pipe.execute()
    events.send_now(conversation.brand_id, [_presence_event(conversation, agent.id, entry, now)])


def leave(conversation: Conversation, agent: Agent) -> None:
    """The agent closed the page: gone at once for the others."""
    client = events.redis_client()
    if client is None:
        db.session.execute(
            delete(Presence).where(
                Presence.conversation_id == conversation.id, Presence.agent_id == agent.id
            )
        )
        return
    client.hdel(_presence_key(conversation.id), str(agent.id))
    gone = {"name": agent.name, "viewing_until": 0, "typing_until": None}
    events.send_now(
        conversation.brand_id, [_presence_event(conversation, agent.id, gone, utcnow())]
    )


def viewers(
    conversation_id: int, except_agent_id: int | None = None, now: datetime | None = None
) -> list[dict]:
    """Who else has the conversation open now: `{agent_id, name, viewing, typing}` where the
    last two are the seconds each state still lasts (0: not typing)."""
    now = now or utcnow()
    client = events.redis_client()
    found: list[tuple[int, dict]] = []
    if client is None:
        rows = db.session.execute(
            select(Presence.agent_id, Agent.name, Presence.viewing_until, Presence.typing_until)
            .join(Agent, Agent.id == Presence.agent_id)
            .where(Presence.conversation_id == conversation_id, Presence.viewing_until > now)
            .order_by(Agent.name, Agent.id)
        ).all()
        found = [
            (
                agent_id,
                {
                    "name": name,
                    "viewing_until": viewing.timestamp(),
                    "typing_until": typing.timestamp() if typing else None,
                },
            )
            for agent_id, name, viewing, typing in rows
        ]
    else:
        stored = client.hgetall(_presence_key(conversation_id))
        found = sorted(
            ((int(field), json.loads(value)) for field, value in stored.items()),
            key=lambda pair: (pair[1]["name"], pair[0]),
        )
    return [
        _viewer(agent_id, entry, now)
        for agent_id, entry in found
        if agent_id != except_agent_id and entry["viewing_until"] > now.timestamp()
    ]


def _viewer(agent_id: int, entry: dict, now: datetime) -> dict[str, Any]:
    at = now.timestamp()
    typing_until = entry.get("typing_until") or 0
    return {
        "agent_id": agent_id,
        "name": entry["name"],
        "viewing": round(max(0.0, entry["viewing_until"] - at), 1),
        "typing": round(max(0.0, typing_until - at), 1),
    }


def _presence_event(conversation: Conversation, agent_id: int, entry: dict, now: datetime) -> dict:
    return {
        "type": events.PRESENCE,
        "conversation_id": conversation.id,
        "admin_only": conversation.request_state is RequestState.HIDDEN,
        **_viewer(agent_id, entry, now),
    }


def _store_presence(
    conversation: Conversation,
    agent: Agent,
    viewing_until: datetime,
    typing_until: datetime | None,
) -> None:
    """One row per agent and conversation, written with an upsert: two tabs of the same agent
    beating at once never collide."""
    insert = pg_insert if db.session.get_bind().dialect.name == "postgresql" else sqlite_insert
    values = {"viewing_until": viewing_until}
    if typing_until is not None:
        values["typing_until"] = typing_until
    statement = insert(Presence).values(
        brand_id=conversation.brand_id,
        conversation_id=conversation.id,
        agent_id=agent.id,
        viewing_until=viewing_until,
        typing_until=typing_until,
    )
    db.session.execute(
        statement.on_conflict_do_update(
            index_elements=[Presence.conversation_id, Presence.agent_id], set_=values
        )
    )
