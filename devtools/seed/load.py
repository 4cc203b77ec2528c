"""Bulk history for benchmarks (`flask seed-load`): months of realistic DMs, written fast.

The domain services write one message at a time; a million rows that way would take an hour. This
module writes the same rows the services would (denormalised conversation fields included) in
bulk: PostgreSQL COPY with ids reserved from the sequences, or batched Core inserts on SQLite.

Contacts, conversation thread keys and mids carry the seed (`load-<seed>-...`), so runs with
different seeds add up; a second run with the same seed into the same channel is refused with
AlreadyExists before anything is written.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import sys
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import click
from sqlalchemy import Table, func, insert, select, text

from helpdesk.accounts.models import Membership
from helpdesk.brands.models import Brand
from helpdesk.channels.models import Channel, ChannelKind
from helpdesk.channels.service import connect_channel
from helpdesk.dm.models import Contact, Conversation, Message, Participant, Reaction
from helpdesk.dm.service import HUMAN_AGENT_WINDOW, PREVIEW_LENGTH, STANDARD_WINDOW
from helpdesk.errors import AlreadyExists
from helpdesk.extensions import db, table_of
from helpdesk.types import utcnow

CHUNK_MESSAGES = 50_000
LONG_CONVERSATION = 500  # always present from 10,000 messages on: the "open a long thread" case
REACTION_RATE = 0.05
DAY = 86_400
IDLE_RESOLVED_AFTER = 3 * DAY
STANDARD_SECONDS = int(STANDARD_WINDOW.total_seconds())
# Agents answer inside the human-agent window, so every reply is one the services would accept.
MAX_REPLY_DELAY = int(HUMAN_AGENT_WINDOW.total_seconds()) - DAY

CONTACT_COLUMNS = (
    "id",
    "brand_id",
    "channel_id",
    "platform_id",
    "username",
    "name",
    "follows_brand",
    "followed_by_brand",
    "blocked",
    "created_at",
)
CONVERSATION_COLUMNS = (
    "id",
    "brand_id",
    "channel_id",
    "kind",
    "thread_key",
    "contact_id",
    "folder",
    "request_state",
    "status",
    "vanish_mode",
    "participant_count",
    "last_inbound_at",
    "last_message_at",
    "last_message_preview",
    "brand_seen_at",
    "created_at",
)
PARTICIPANT_COLUMNS = ("id", "conversation_id", "contact_id", "is_brand", "added_at")
MESSAGE_COLUMNS = (
    "id",
    "brand_id",
    "channel_id",
    "conversation_id",
    "contact_id",
    "author_agent_id",
    "direction",
    "mid",
    "kind",
    "text",
    "attachments",
    "extra",
    "reply_to_id",
    "reply_to_mid",
    "status",
    "is_echo",
    "is_automated",
    "human_agent_tag",
    "suppressed",
    "vanish",
    "sent_at",
    "delivered_at",
    "seen_at",
    "edit_count",
    "created_at",
)
REACTION_COLUMNS = ("id", "message_id", "reactor", "contact_id", "agent_id", "emoji", "reacted_at")
# In the order they are written, parents first: (table, columns, key of the chunk's rows).
TABLES = (
    (table_of(Contact), CONTACT_COLUMNS, "contacts"),
    (table_of(Conversation), CONVERSATION_COLUMNS, "conversations"),
    (table_of(Participant), PARTICIPANT_COLUMNS, "participants"),
    (table_of(Message), MESSAGE_COLUMNS, "messages"),
    (table_of(Reaction), REACTION_COLUMNS, "reactions"),
)


@dataclass
class LoadReport:
    messages: int
    conversations: int
    reactions: int
    seconds: float


# What people write ------------------------------------------------------------------------------

FIRST_NAMES = (
    "Emma Liam Olivia Noah Ava Elijah Sophia Lucas Mia Mateo Amelia Leon Hannah Jonas Lea Finn "
    "Chloe Hugo Zoe Louis Sofia Marco Giulia Luca Ines Tiago Maya Omar Aisha Yusuf Priya Arjun "
    "Mei Kenji Yuna Ji-ho Freya Oscar Nora Erik Ingrid Mateus Ana Pedro Lucia Diego Camille Jules "
    "Amara Kwame"
).split()
LAST_NAMES = (
    "Smith Jones Brown Taylor Wilson Müller Schmidt Schneider Fischer Weber Martin Bernard Dubois "
    "Moreau Rossi Russo Bianchi Romano Garcia Fernandez Lopez Martinez Silva Santos Costa Oliveira "
    "Kowalski Nowak Novak Jensen Hansen Nielsen Larsen Johansson Andersson Khan Patel Shah Nair "
    "Kim Lee Park Tanaka Sato Chen Wang Okafor Mensah Osei Adeyemi"
).split()
CUSTOMER_TEXTS = (
    "Hi! Where is my order #{order}? It says processing since last week",
    "Hello, do you ship to {country}?",
    "How long does shipping to {country} usually take?",
    "Is the {product} true to size? I'm usually a {size}",
    "Can I exchange my {product} for a size {size}?",
    "I'd like to return the {product}, how does it work?",
    "The {product} I received has a small stain on the sleeve 😕",
    "My parcel says delivered but I haven't got anything",
    "Do you have the {product} in {colour}?",
    "When is the {product} back in stock in {size}?",
    "Thank you so much, it arrived today and I love it!! 😍",
    "Can I still change the address on order #{order}?",
    "Is there a discount code for first orders?",
    "My discount code doesn't work at checkout",
    "Do you have a store in {city}?",
    "What's the fabric of the {product}?",
    "Can I wash the {product} in the machine?",
    "I got the wrong size, I ordered {size} but got another one",
    "How long do refunds take? I sent my return back 10 days ago",
    "Hi, I paid twice for order #{order}, can you check?",
    "Is the {product} suitable for winter?",
    "Do you do gift wrapping?",
    "ok thanks!",
    "Perfect, thank you 🙏",
    "Great, I'll wait then",
    "Any update on this?",
    "Hello?",
    "Yes please",
    "It's order #{order}",
    "Sure, my email is the same as on the order",
    "Can I pick it up in the {city} store instead?",
    "Will there be a Black Friday sale?",
    "The tracking link doesn't work",
    "Do you restock the {colour} {product}?",
    "I love your new collection!! 🔥",
)
AGENT_TEXTS = (
    "Hi {name}! Thanks for reaching out, let me check that for you.",
    "Hi {name}, your order #{order} shipped today, you'll get the tracking link by email.",
    "We ship to {country}: usually 3 to 5 working days, free over €80.",
    "The {product} runs slightly small, we recommend one size up.",
    "Of course! You can start the exchange here: https://demo-brand.example/returns",
    "Returns are free within 30 days, just use the label in your parcel.",
    "So sorry about that! Could you send us a photo so we can sort it out?",
    "I've opened an investigation with the carrier, we'll update you within 48 hours.",
    "The {colour} {product} is back in stock on Thursday.",
    "Done ✅ The address is updated.",
    "Welcome! Use WELCOME15 for 15% off your first order.",
    "Could you send us your order number please?",
    "Our {city} store is open Monday to Saturday, 10am to 7pm.",
    "It's 100% organic cotton, machine washable at 30°.",
    "We've refunded the duplicate payment, it shows up in 3 to 5 days.",
    "Refunds go out within 5 working days of the return arriving.",
    "You're welcome, have a lovely day! 💛",
    "Happy to help!",
    "Thanks for your patience, {name}!",
    "Yes, gift wrapping is available at checkout for €3.",
)
PRODUCTS = (
    "linen shirt",
    "wool coat",
    "Trail Runner sneakers",
    "knit cardigan",
    "puffer vest",
    "Riviera linen set",
    "rain jacket",
    "leather tote",
    "slip dress",
    "denim jacket",
    "hoodie",
)
COLOURS = ("black", "olive", "sand", "navy", "camel", "sage", "white", "grey")
SIZES = ("XS", "S", "M", "L", "XL", "38", "40", "42", "44")
COUNTRIES = ("Germany", "France", "Ireland", "Italy", "Spain", "the UK", "the US", "Austria")
CITIES = ("Berlin", "Hamburg", "Munich", "Paris", "London", "Vienna", "Milan")
EMOJIS = ("❤️", "❤️", "❤️", "👍", "😍", "😂", "🙏", "🔥", "😮")

_CDN = "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id={}&signature=load"


def _attachment_specs() -> list[tuple[str, list, dict, str | None]]:
    """(kind, attachments, extra, text) of the non-text inbound messages, shaped like Meta's."""
    specs: list[tuple[str, list, dict, str | None]] = []
    for i in range(8):
        asset = 17900000000000000 + i
        specs.append(("image", [{"type": "image", "url": _CDN.format(asset)}], {}, None))
    for i in range(2):
        asset = 17950000000000000 + i
        specs.append(("video", [{"type": "video", "url": _CDN.format(asset)}], {}, None))
        specs.append(("audio", [{"type": "audio", "url": _CDN.format(asset + 10)}], {}, None))
        specs.append(
            (
                "file",
                [{"type": "file", "url": _CDN.format(asset + 20), "name": "receipt.pdf"}],
                {},
                None,
            )
        )
    for i in range(3):
        specs.append(
            (
                "share",
                [
                    {
                        "type": "share",
                        "url": f"https://www.instagram.com/p/Load{i}/",
                        "title": f"New in: {PRODUCTS[i]} ✨",
                    }
                ],
                {},
                None,
            )
        )
        specs.append(
            (
                "story_reply",
                [],
                {
                    "story": {
                        "id": str(18000000000000000 + i),
                        "url": _CDN.format(18000000000000000 + i),
                    }
                },
                "Is this still available?",
            )
        )
    specs.append(
        (
            "sticker",
            [
                {
                    "type": "sticker",
                    "url": _CDN.format(369239263222822),
                    "sticker_id": 369239263222822,
                }
            ],
            {},
            None,
        )
    )
    specs.append(
        ("story_mention", [{"type": "story_mention", "url": _CDN.format(18100000000000)}], {}, None)
    )
    return specs


ATTACHMENT_SPECS = _attachment_specs()
AGENT_IMAGE = [{"type": "image", "url": "https://demo-brand.example/media/size-chart.png"}]


def _preview(kind: str, body: str | None) -> str:
    """The same preview the services store (`dm.conversations._preview`)."""
    return body[:PREVIEW_LENGTH] if body else f"[{kind.replace('_', ' ')}]"


# Writing ------------------------------------------------------------------------------------------


class _Writer(ABC):
    """Reserves ids and writes whole chunks, each in its own transaction, for one backend.

    `json` makes a JSON column's value; `on_written` is called (in the caller's thread) with each
    chunk once it is committed.
    """

    json: Callable[[object], object]

    def __init__(self, on_written: Callable[[dict[str, list[tuple]]], None]) -> None:
        self.on_written = on_written

    @abstractmethod
    def ids(self, table: Table, count: int) -> Sequence[int]:
        """Ids for `count` new rows of `table`."""

    @abstractmethod
    def submit(self, rows: dict[str, list[tuple]]) -> None:
        """Write one chunk: {table name: rows}."""

    def close(self, failed: bool = False) -> None:  # noqa: B027  (optional: nothing to release)
        """Wait for every submitted chunk (unless `failed`) and release the connections."""


class _PostgresWriter(_Writer):
    """Binary COPY on two connections at once: the server's index and foreign-key work is the
    bottleneck, so two backends use both cores. Ids come from each table's own sequence, so
    inserts made meanwhile by anyone else stay safe."""

    workers = 2

    def __init__(self, on_written: Callable[[dict[str, list[tuple]]], None]) -> None:
        super().__init__(on_written)
        self.json = json.dumps
        self.engine = db.engine
        self.connection = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        raw = self.connection.connection.driver_connection
        self.sequences: dict[str, str] = {}
        self.oids: dict[str, list[int]] = {}
        for table, columns, _key in TABLES:
            self.sequences[table.name] = raw.execute(
                "SELECT pg_get_serial_sequence(%s, 'id')", (table.name,)
            ).fetchone()[0]
            types = dict(
                raw.execute(
                    "SELECT attname, atttypid::int FROM pg_attribute"
                    " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
                    (table.name,),
                ).fetchall()
            )
            self.oids[table.name] = [types[column] for column in columns]
        self.pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="seed-load")
        self.pending: deque[tuple[Future, dict[str, list[tuple]]]] = deque()

    def ids(self, table: Table, count: int) -> Sequence[int]:
        raw = self.connection.connection.driver_connection
        rows = raw.execute(
            "SELECT nextval(%s::regclass) FROM generate_series(1, %s)",
            (self.sequences[table.name], count),
        ).fetchall()
        return [row[0] for row in rows]

    def submit(self, rows: dict[str, list[tuple]]) -> None:
        while len(self.pending) >= self.workers:
            self._wait_oldest()
        self.pending.append((self.pool.submit(self._write, rows), rows))

    def _wait_oldest(self) -> None:
        future, rows = self.pending.popleft()
        future.result()
        self.on_written(rows)

    def close(self, failed: bool = False) -> None:
        try:
            while self.pending and not failed:
                self._wait_oldest()
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.connection.close()

    def _write(self, rows: dict[str, list[tuple]]) -> None:
        with self.engine.begin() as connection:
            connection.exec_driver_sql("SET LOCAL synchronous_commit = off")
            with connection.connection.driver_connection.cursor() as cursor:
                for table, columns, key in TABLES:
                    if not rows[key]:
                        continue
                    statement = (
                        f"COPY {table.name} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"
                    )
                    with cursor.copy(statement) as copy:
                        copy.set_types(self.oids[table.name])
                        write_row = copy.write_row
                        for row in rows[key]:
                            write_row(row)


class _CoreWriter(_Writer):
    """Batched Core inserts (SQLite): the column types convert datetimes and JSON as usual."""

    batch = 5_000

    def __init__(self, on_written: Callable[[dict[str, list[tuple]]], None]) -> None:
        super().__init__(on_written)
        self.json = _identity

    def ids(self, table: Table, count: int) -> Sequence[int]:
        start = db.session.scalar(select(func.coalesce(func.max(table.c.id), 0))) + 1
        return range(start, start + count)

    def submit(self, rows: dict[str, list[tuple]]) -> None:
        for table, columns, key in TABLES:
            statement = insert(table)
            chunk = rows[key]
            for i in range(0, len(chunk), self.batch):
                db.session.execute(
                    statement,
                    [dict(zip(columns, row, strict=True)) for row in chunk[i : i + self.batch]],
                )
        db.session.commit()
        self.on_written(rows)


def _identity(value: object) -> object:
    return value


# Generating -----------------------------------------------------------------------------------


def conversation_sizes(rng: random.Random, total: int) -> list[int]:
    """A long tail around a mean of ~20 messages: mostly short threads, a few hundreds long."""
    sizes: list[int] = []
    remaining = total
    if total >= 10_000:
        sizes.append(LONG_CONVERSATION)
        remaining -= LONG_CONVERSATION
    while remaining > 0:
        if rng.random() < 0.03:
            size = int(math.exp(rng.uniform(math.log(50), math.log(LONG_CONVERSATION))))
        else:
            size = 1 + int(rng.expovariate(1 / 15))
        size = min(size, remaining)
        sizes.append(size)
        remaining -= size
    rng.shuffle(sizes)
    return sizes


def _timeline(rng: random.Random, size: int, inbound_only: bool) -> list[tuple[int, bool]]:
    """(seconds from the first message, inbound?) in turns: the customer writes, an agent answers
    minutes to hours later, the customer comes back hours or days later."""
    timeline: list[tuple[int, bool]] = []
    at = 0
    inbound = True
    while len(timeline) < size:
        if inbound:
            burst = 1 + (rng.random() < 0.45) + (rng.random() < 0.2)
        else:
            burst = 1 + (rng.random() < 0.3)
        for i in range(min(burst, size - len(timeline))):
            if i:
                at += rng.randint(5, 120)
            timeline.append((at, inbound))
        if inbound and not inbound_only:
            at += min(int(rng.lognormvariate(7.1, 1.1)) + 30, MAX_REPLY_DELAY)  # median ~20 min
        else:
            at += min(int(rng.lognormvariate(8.5, 1.6)) + 60, 10 * DAY)  # median ~80 minutes
        if not inbound_only:
            inbound = not inbound
    return timeline


class _Generator:
    """Builds the rows of whole conversations; every denormalised field is computed here."""

    def __init__(
        self,
        writer: _Writer,
        brand_id: int,
        channel_id: int,
        agent_ids: list[int],
        seed: int,
        days: int,
        now: datetime,
    ) -> None:
        self.writer = writer
        self.rng = random.Random(seed)
        self.brand_id = brand_id
        self.channel_id = channel_id
        self.agent_ids = agent_ids or [None]
        self.seed = seed
        self.window = days * DAY
        self.now = int(now.timestamp())
        self.contacts_made = 0
        self.messages_made = 0
        self.empty_list = writer.json([])
        self.empty_dict = writer.json({})
        self.specs = [
            (kind, writer.json(attachments), writer.json(extra), body)
            for kind, attachments, extra, body in ATTACHMENT_SPECS
        ]
        self.agent_image = writer.json(AGENT_IMAGE)

    def sizes(self, total: int) -> list[int]:
        return conversation_sizes(self.rng, total)

    def fill(self, template: str, name: str) -> str:
        rng = self.rng
        if "{" not in template:
            return template
        return template.format(
            name=name,
            order=rng.randint(40_000, 99_999),
            product=rng.choice(PRODUCTS),
            colour=rng.choice(COLOURS),
            size=rng.choice(SIZES),
            country=rng.choice(COUNTRIES),
            city=rng.choice(CITIES),
        )

    def placement(self, pending: bool) -> tuple[str, str, bool]:
        """Folder, request state and whether the brand follows the contact: most conversations
        sit in Primary, a few in General, and short unanswered ones are pending requests."""
        if pending:
            return "requests", "pending", False
        roll = self.rng.random()
        if roll < 0.04:
            return "primary", "accepted", False
        if roll < 0.12:
            return "general", "none", True
        return "primary", "none", True

    def chunk(self, sizes: list[int]) -> dict[str, list[tuple]]:
        """All rows of these conversations, with ids reserved from the writer."""
        writer, rng = self.writer, self.rng
        count = len(sizes)
        total = sum(sizes)
        contact_ids = writer.ids(table_of(Contact), count)
        conversation_ids = writer.ids(table_of(Conversation), count)
        participant_ids = writer.ids(table_of(Participant), 2 * count)
        message_ids = iter(writer.ids(table_of(Message), total))

        contacts: list[tuple] = []
        conversations: list[tuple] = []
        participants: list[tuple] = []
        messages: list[tuple] = []
        reactions: list[tuple] = []
        brand_id, channel_id, seed = self.brand_id, self.channel_id, self.seed
        specs, agent_ids = self.specs, self.agent_ids
        empty_list, empty_dict = self.empty_list, self.empty_dict
        random_ = rng.random
        stamp = _timestamps()

        for index, size in enumerate(sizes):
            number = self.contacts_made
            self.contacts_made += 1
            contact_id = contact_ids[index]
            conversation_id = conversation_ids[index]
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            platform_id = f"load-{seed}-c{number:09d}"

            pending = size <= 3 and random_() < 0.12
            timeline = _timeline(rng, size, inbound_only=pending)
            timeline = _fit(timeline, self.window * 0.9)
            span = timeline[-1][0]
            start = self.now - span - rng.randint(0, max(self.window - span, 0))
            seen = _seen(timeline)

            last_inbound = last_outbound = None
            last_outbound_row: tuple | None = None
            preview = ""
            for i, (offset, inbound) in enumerate(timeline):
                message_id = next(message_ids)
                mid = f"load-{seed}-m{self.messages_made:010d}"
                self.messages_made += 1
                at = start + offset
                sent_at = stamp(at)
                seen_at = stamp(start + seen[i]) if seen[i] is not None else None
                reply_to_id = reply_to_mid = None
                if inbound:
                    roll = random_()
                    if roll < 0.1:
                        kind, attachments, extra, body = specs[int(roll * 10 * len(specs))]
                    else:
                        kind, attachments, extra = "text", empty_list, empty_dict
                        body = self.fill(rng.choice(CUSTOMER_TEXTS), first)
                        if last_outbound_row is not None and random_() < 0.02:
                            reply_to_id, reply_to_mid = last_outbound_row
                    last_inbound = at
                    messages.append(
                        (
                            message_id,
                            brand_id,
                            channel_id,
                            conversation_id,
                            contact_id,
                            None,
                            "inbound",
                            mid,
                            kind,
                            body,
                            attachments,
                            extra,
                            reply_to_id,
                            reply_to_mid,
                            "received",
                            False,
                            False,
                            False,
                            False,
                            False,
                            sent_at,
                            None,
                            seen_at,
                            0,
                            sent_at,
                        )
                    )
                else:
                    body = self.fill(rng.choice(AGENT_TEXTS), first)
                    kind, attachments = "text", empty_list
                    if random_() < 0.03:
                        kind, attachments = "image", self.agent_image
                    human_tag = last_inbound is not None and at - last_inbound > STANDARD_SECONDS
                    last_outbound = at
                    last_outbound_row = (message_id, mid)
                    messages.append(
                        (
                            message_id,
                            brand_id,
                            channel_id,
                            conversation_id,
                            contact_id,
                            rng.choice(agent_ids),
                            "outbound",
                            mid,
                            kind,
                            body,
                            attachments,
                            empty_dict,
                            None,
                            None,
                            "seen" if seen_at else "delivered",
                            False,
                            False,
                            human_tag,
                            False,
                            False,
                            sent_at,
                            stamp(at + 1),
                            seen_at,
                            0,
                            sent_at,
                        )
                    )
                preview = _preview(kind, body)
                if random_() < REACTION_RATE:
                    reacted = stamp(min(at + rng.randint(20, 3600), self.now))
                    if inbound:
                        reactions.append(
                            (
                                message_id,
                                "brand",
                                None,
                                rng.choice(agent_ids),
                                rng.choice(EMOJIS),
                                reacted,
                            )
                        )
                    else:
                        reactions.append(
                            (
                                message_id,
                                f"contact:{contact_id}",
                                contact_id,
                                None,
                                rng.choice(EMOJIS),
                                reacted,
                            )
                        )

            folder, state, followed = self.placement(pending)
            last_at = start + span
            # A desk resolves what it answered, and what went quiet: only recent conversations
            # (and pending requests) are open, so the backlog follows the recent traffic, not
            # the length of the history.
            idle = self.now - last_at
            resolved = not pending and (
                (last_outbound == last_at and idle > DAY) or idle > IDLE_RESOLVED_AFTER
            )
            created = stamp(start)
            contacts.append(
                (
                    contact_id,
                    brand_id,
                    channel_id,
                    platform_id,
                    f"{first}.{last}{number % 1000}".lower(),
                    f"{first} {last}",
                    followed or random_() < 0.3,
                    followed,
                    False,
                    created,
                )
            )
            conversations.append(
                (
                    conversation_id,
                    brand_id,
                    channel_id,
                    "direct",
                    f"direct:{platform_id}",
                    contact_id,
                    folder,
                    state,
                    "resolved" if resolved else "open",
                    False,
                    2,
                    stamp(last_inbound),
                    stamp(last_at),
                    preview,
                    stamp(last_outbound) if last_outbound is not None else None,
                    created,
                )
            )
            participants.append((participant_ids[2 * index], conversation_id, None, True, created))
            participants.append(
                (participant_ids[2 * index + 1], conversation_id, contact_id, False, created)
            )
        reaction_ids = writer.ids(table_of(Reaction), len(reactions)) if reactions else []
        return {
            "reactions": [(rid, *row) for rid, row in zip(reaction_ids, reactions, strict=True)],
            "contacts": contacts,
            "conversations": conversations,
            "participants": participants,
            "messages": messages,
        }


def _fit(timeline: list[tuple[int, bool]], limit: float) -> list[tuple[int, bool]]:
    """A timeline longer than the history window is squeezed into it, keeping its order."""
    span = timeline[-1][0]
    if span <= limit:
        return timeline
    scale = limit / span
    fitted, previous = [], -1
    for offset, inbound in timeline:
        previous = max(int(offset * scale), previous + 1)
        fitted.append((previous, inbound))
    return fitted


def _seen(timeline: list[tuple[int, bool]]) -> list[int | None]:
    """Who saw what when: the agent reads inbound messages when answering, the customer reads
    replies when writing back."""
    seen: list[int | None] = [None] * len(timeline)
    next_in = next_out = None
    for i in range(len(timeline) - 1, -1, -1):
        at, inbound = timeline[i]
        if inbound:
            seen[i] = next_out
            next_in = at
        else:
            seen[i] = next_in
            next_out = at
    return seen


def _timestamps() -> Callable[[int], datetime]:
    """Epoch seconds to aware datetimes, cached: a chunk reuses many of the same seconds."""
    cache: dict[int, datetime] = {}

    def stamp(seconds: int) -> datetime:
        value = cache.get(seconds)
        if value is None:
            value = cache[seconds] = datetime.fromtimestamp(seconds, UTC)
        return value

    return stamp


# Entry point ----------------------------------------------------------------------------------


def _load_channel(brand: Brand) -> Channel:
    """The brand's first Instagram channel, else its first channel, else a new API channel."""
    channels = db.session.scalars(
        select(Channel).where(Channel.brand_id == brand.id).order_by(Channel.id)
    ).all()
    for channel in channels:
        if channel.kind is ChannelKind.INSTAGRAM:
            return channel
    if channels:
        return channels[0]
    return connect_channel(brand, ChannelKind.API, f"load-{brand.slug}", name="Load test")


def _chunks(sizes: list[int], limit: int) -> Iterator[list[int]]:
    chunk: list[int] = []
    count = 0
    for size in sizes:
        chunk.append(size)
        count += size
        if count >= limit:
            yield chunk
            chunk, count = [], 0
    if chunk:
        yield chunk


def seed_load(
    brand: Brand, messages: int, days: int = 90, seed: int = 1, progress: bool = False
) -> LoadReport:
    """Write `messages` messages of history into the brand's first channel, committing per chunk.

    Raises AlreadyExists, before writing anything, when this seed was already loaded there.
    """
    started = time.perf_counter()
    channel = _load_channel(brand)
    first_contact = f"load-{seed}-c{0:09d}"
    if db.session.scalar(
        select(Contact.id).where(
            Contact.channel_id == channel.id, Contact.platform_id == first_contact
        )
    ):
        raise AlreadyExists(
            f"seed {seed} is already loaded into channel {channel.id}; choose another --seed"
        )
    brand_id, channel_id = brand.id, channel.id
    agent_ids = list(
        db.session.scalars(
            select(Membership.agent_id)
            .where(Membership.brand_id == brand.id)
            .order_by(Membership.agent_id)
        )
    )
    now = utcnow().replace(microsecond=0)
    db.session.commit()  # the channel, if new; each chunk is then its own transaction

    report = LoadReport(messages=0, conversations=0, reactions=0, seconds=0.0)
    bar = (
        click.progressbar(length=messages, label=f"loading {messages:,} messages", file=sys.stderr)
        if progress
        else None
    )

    def written(rows: dict[str, list[tuple]]) -> None:
        report.messages += len(rows["messages"])
        report.conversations += len(rows["conversations"])
        report.reactions += len(rows["reactions"])
        if bar is not None:
            bar.update(len(rows["messages"]))

    postgres = db.session.get_bind().dialect.name == "postgresql"
    writer: _Writer = _PostgresWriter(written) if postgres else _CoreWriter(written)
    generator = _Generator(writer, brand_id, channel_id, agent_ids, seed, days, now)
    failed = True
    with bar or contextlib.nullcontext():
        try:
            for chunk in _chunks(generator.sizes(messages), CHUNK_MESSAGES):
                writer.submit(generator.chunk(chunk))
            failed = False
        finally:
            writer.close(failed)
    if postgres:
        # What autovacuum would do after a while on a live database: statistics for the planner,
        # and the visibility map that lets index-only scans skip the table. VACUUM cannot run in
        # a transaction block.
        tables = "contacts, conversations, participants, messages, reactions"
        db.session.commit()
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text(f"VACUUM (ANALYZE) {tables}"))
    report.seconds = time.perf_counter() - started
    return report
