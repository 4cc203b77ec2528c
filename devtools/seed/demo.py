"""The demo brand of `flask seed-demo`: a small, believable inbox that shows every rule of the DM
model (docs/concepts.md).

Everything is written through the domain services, so the demo data obeys the same rules as real
traffic (request routing, hidden words, blocking, reply windows, vanish mode, group limits).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from devtools.seed.script import THREADS, In, Out, Person, Thread
from helpdesk.accounts.models import Agent, Availability, Role, Team
from helpdesk.accounts.service import add_team_member, create_agent, create_team
from helpdesk.assignment.service import ROUND_ROBIN, set_availability
from helpdesk.brands.models import Brand
from helpdesk.brands.service import create_brand
from helpdesk.canned import service as canned
from helpdesk.channels.models import Channel, ChannelKind
from helpdesk.channels.service import connect_channel
from helpdesk.dm import service
from helpdesk.dm.models import Contact, Conversation, Folder, Message, MessageStatus
from helpdesk.extensions import db
from helpdesk.inbox import service as inbox
from helpdesk.sla import service as sla
from helpdesk.tickets import service as tickets
from helpdesk.tickets.models import Priority, RoutingRule, TicketStatus
from helpdesk.tickets.tags import add_tag_rule
from helpdesk.types import utcnow

DEMO_SLUG = "demo"
DEMO_ACCOUNT_ID = "17841400000000001"
DEMO_ACCESS_TOKEN = "demo-page-token"
DEMO_HIDDEN_WORDS = ["crypto giveaway"]
# email, name, role, password: fixed so that `make run` can always print the logins.
DEMO_AGENTS = (
    ("agent@demo.test", "Sam Rivera", Role.AGENT, "demo-agent-pass"),
    ("manager@demo.test", "Morgan Patel", Role.MANAGER, "demo-manager-pass"),
    ("admin@demo.test", "Alex Kim", Role.ADMIN, "demo-admin-pass"),
)

# Two customers no seeded contact is (those are 61200000000000NN): the README and the banner of
# `make run` write to the demo as them. `make run` gives the simulator their profiles, which say
# the brand follows them, so their first DM lands in the inbox with a ticket, not in Requests.
NEW_CUSTOMERS = (
    {"id": "6190000000000001", "username": "nina.berg", "name": "Nina Berg"},
    {"id": "6190000000000002", "username": "omar.haddad", "name": "Omar Haddad"},
)
NEW_CUSTOMER_IDS = tuple(customer["id"] for customer in NEW_CUSTOMERS)

# The support layer of the demo, so that `/` finds replies and every open ticket has a clock.
DEMO_TIMEZONE = "Europe/Berlin"
DEMO_WEEKLY_HOURS = {day: [["09:00", "18:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}
# (priority, first response, next response, resolution) in business minutes
DEMO_SLA_MINUTES = (
    (Priority.URGENT, 15, 30, 4 * 60),
    (Priority.HIGH, 30, 60, 8 * 60),
    (Priority.NORMAL, 60, 120, 2 * 9 * 60),
    (Priority.LOW, 4 * 60, 8 * 60, 5 * 9 * 60),
)
DEMO_TAG_RULES = {
    "refund": ("refund", "money back", "reimburse"),
    "shipping": ("delivery", "tracking", "where is my order", "ship", "ships", "shipping"),
    "returns": ("return", "returns", "exchange"),
    "sizing": ("size", "sizes", "fit"),
}
# shortcode, title, body; shared with the brand unless an owner's email is given
DEMO_CANNED = (
    (
        "hello",
        "Greeting",
        "Hi {{ contact.first_name }}, {{ agent.first_name }} from {{ brand.name }} here. "
        "How can I help?",
        None,
    ),
    (
        "refund",
        "Refund on its way",
        "Hi {{ contact.first_name }}, I'm sorry it didn't work out. Your refund is on its way and "
        "reaches your account within 5 to 7 working days. Anything else I can do?",
        None,
    ),
    (
        "shipping",
        "Shipping times",
        "Hi {{ contact.first_name }}! Orders leave our warehouse within one working day and arrive "
        "in 2 to 4 working days. You get a tracking link by email as soon as yours ships.",
        None,
    ),
    (
        "thankyou",
        "Thanks and goodbye",
        "Thanks for writing to {{ brand.name }}, {{ contact.first_name }}! Have a lovely day 💛",
        None,
    ),
    (
        "signoff",
        "My sign-off",
        "Talk soon, {{ agent.name }} ({{ brand.name }} support, ticket #{{ ticket.id }})",
        "agent@demo.test",
    ),
)

# Running the script -----------------------------------------------------------------------------


class _Demo:
    """Plays THREADS against the services, numbering mids like the platform would."""

    def __init__(self, channel: Channel, agents: dict[str, Agent], now: datetime):
        self.channel = channel
        self.agents = agents
        self.now = now
        self.mids = 0

    def mid(self) -> str:
        self.mids += 1
        raw = f"ig_message_item:1:demo:{DEMO_ACCOUNT_ID}:{self.mids:05d}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def clamp(self, at: datetime) -> datetime:
        return min(at, self.now)

    def contact(self, number: int, person: Person) -> Contact:
        contact = service.get_or_create_contact(
            self.channel, f"61{20000000000000 + number}", person.username, person.name
        )
        contact.followed_by_brand = person.followed
        contact.follows_brand = person.follows
        db.session.flush()
        return contact

    def play(self, thread: Thread, contacts: list[Contact]) -> Conversation:
        start = self.now - timedelta(hours=thread.hours_ago)
        conversation: Conversation | None = None
        if thread.group is not None:
            conversation = service.create_group(
                self.channel, thread.group[0], contacts, title=thread.group[1]
            )
        messages: list[Message | None] = []
        for step in thread.steps:
            at = start + timedelta(minutes=step.at)
            if at > self.now:
                raise ValueError(f"demo step {step} of {contacts[0].username} is in the future")
            if isinstance(step, In):
                message = self.inbound(thread, step, contacts[step.sender], at, messages)
                conversation = db.session.get(Conversation, message.conversation_id)
            elif isinstance(step, Out):
                message = self.outbound(conversation, step, contacts[step.reactor], at, messages)
            else:
                message = None
                self.act(conversation, step.action, at)
            messages.append(message)
        return conversation

    def inbound(
        self, thread: Thread, step: In, contact: Contact, at: datetime, earlier: list
    ) -> Message:
        message = inbox.receive(
            self.channel,
            service.InboundMessage(
                mid=self.mid(),
                sender_id=contact.platform_id,
                sent_at=at,
                kind=step.kind,
                text=step.text,
                attachments=[dict(a) for a in step.attachments],
                extra=dict(step.extra),
                reply_to_mid=earlier[step.quote].mid if step.quote is not None else None,
                thread_key=thread.group[0] if thread.group else None,
                sender_username=contact.username,
                sender_name=contact.name,
            ),
            now=at,
        )
        if step.brand_reacts:
            service.react(
                message,
                step.brand_reacts,
                agent=self.agents["agent@demo.test"],
                at=self.clamp(at + timedelta(minutes=3)),
            )
        if step.edited_to:
            service.edit_message(
                message, step.edited_to, num_edit=1, at=self.clamp(at + timedelta(minutes=1))
            )
        if step.unsent:
            service.unsend_message(message, at=self.clamp(at + timedelta(minutes=1)))
        return message

    def outbound(
        self, conversation: Conversation, step: Out, reactor: Contact, at: datetime, earlier: list
    ) -> Message:
        service.mark_seen_by_brand(conversation, at=at)
        message = inbox.reply(
            conversation,
            self.agents[step.agent],
            text=step.text,
            attachments=[dict(a) for a in step.attachments],
            reply_to=earlier[step.quote] if step.quote is not None else None,
            now=at,
        )
        # What the delivery worker does once the platform accepted the message.
        message.mid = self.mid()
        message.status = MessageStatus.DELIVERED
        message.sent_at = at
        message.delivered_at = at + timedelta(seconds=2)
        db.session.flush()
        if step.read:
            service.mark_read_by_contact(message, at=self.clamp(at + timedelta(minutes=2)))
        if step.contact_reacts:
            service.react(
                message,
                step.contact_reacts,
                contact=reactor,
                at=self.clamp(at + timedelta(minutes=3)),
            )
        return message

    def act(self, conversation: Conversation, action: str, at: datetime) -> None:
        """A scripted step that is no message, by its name in the thread's script."""
        if action.startswith("priority "):
            tickets.set_priority(
                tickets.current_ticket(conversation),
                Priority(action.removeprefix("priority ")),
                self.agents["agent@demo.test"],
                now=at,
            )
            return
        steps: dict[str, Callable[[], object]] = {
            "accept": lambda: inbox.accept(conversation, None, now=at),
            "decline": lambda: service.decline_request(conversation),
            "block": lambda: service.block_contact(
                db.session.get(Contact, conversation.contact_id), now=at
            ),
            "general": lambda: service.move_to_folder(conversation, Folder.GENERAL),
            "vanish": lambda: service.set_vanish_mode(conversation, True),
            "seen": lambda: self.seen(conversation, at),
            "leave": lambda: service.leave_thread(conversation, at=at),
            "purge": lambda: service.purge_vanish_messages(now=at),
            "resolve": lambda: tickets.set_status(
                tickets.current_ticket(conversation),
                TicketStatus.RESOLVED,
                self.agents["agent@demo.test"],
                now=at,
            ),
        }
        if action not in steps:
            raise ValueError(f"unknown demo action {action!r}")
        steps[action]()

    def seen(self, conversation: Conversation, at: datetime) -> None:
        """The agent revealed the vanish-mode photo and marked it read."""
        service.mark_seen_by_brand(conversation, at=at)
        service.reveal_vanish_messages(conversation, at=at)
        service.confirm_vanish_read(conversation, at=at)


def demo_passwords() -> dict[str, str]:
    return {email: password for email, _name, _role, password in DEMO_AGENTS}


def next_christmas(timezone: str, now: datetime) -> date:
    """The coming 25 December in the brand's own calendar, today included."""
    today = now.astimezone(ZoneInfo(timezone)).date()
    christmas = date(today.year, 12, 25)
    return christmas if today <= christmas else date(today.year + 1, 12, 25)


def _support_layer(
    brand: Brand, team: Team, agents: dict[str, Agent], manager: Agent, now: datetime
) -> None:
    """Hours, SLA policies, keyword tags, automatic assignment and canned replies, set up before
    the threads play so that their tickets get clocks, tags and assignees as live traffic would."""
    sla.set_calendar(
        brand,
        manager,
        {
            "timezone": brand.timezone,
            "weekly": DEMO_WEEKLY_HOURS,
            "holidays": [next_christmas(brand.timezone, now).isoformat()],
        },
        now=now,
    )
    for position, (priority, first, following, resolution) in enumerate(DEMO_SLA_MINUTES, 1):
        sla.create_policy(
            brand,
            manager,
            f"{priority.value.title()} priority",
            position,
            {"priority": priority.value},
            {
                "first_response_min": first,
                "next_response_min": following,
                "resolution_min": resolution,
            },
            now=now,
        )
    for tag_name, keywords in DEMO_TAG_RULES.items():
        for keyword in keywords:
            add_tag_rule(brand, manager, keyword, tag_name)
    # Routing rules have no service of their own yet: one rule without conditions sends every
    # ticket to the team, whose online agents take them in turns.
    db.session.add(RoutingRule(brand_id=brand.id, team_id=team.id, position=0))
    brand.auto_assign = True
    brand.assignment_mode = ROUND_ROBIN
    db.session.flush()
    for agent in agents.values():
        set_availability(agent, Availability.ONLINE, now=now)
    for shortcode, title, body, owner in DEMO_CANNED:
        author = agents[owner] if owner else manager
        canned.create(brand, author, shortcode, title, body, shared=owner is None)


def seed_demo() -> tuple[bool, dict[str, str]]:
    """Create the demo brand once; returns whether it was created and the demo logins.

    A second call changes nothing, so `make run` can call it every time. Flushes; the caller
    commits.
    """
    if db.session.scalar(select(Brand.id).where(Brand.slug == DEMO_SLUG)) is not None:
        return False, demo_passwords()

    brand = create_brand(DEMO_SLUG, "Demo Brand", DEMO_TIMEZONE)
    brand.hidden_words = list(DEMO_HIDDEN_WORDS)
    channel = connect_channel(
        brand, ChannelKind.INSTAGRAM, DEMO_ACCOUNT_ID, DEMO_ACCESS_TOKEN, name="Demo Brand"
    )
    team = create_team(brand, "Support")
    agents: dict[str, Agent] = {}
    for email, name, role, password in DEMO_AGENTS:
        agent, _ = create_agent(email, name, brand, role, password)
        add_team_member(team, agent)
        agents[email] = agent
    now = utcnow().replace(microsecond=0)
    oldest = now - timedelta(hours=max(thread.hours_ago for thread in THREADS))
    _support_layer(brand, team, agents, agents["manager@demo.test"], oldest)

    demo = _Demo(channel, agents, now)
    number = 0
    for thread in THREADS:
        contacts = []
        for person in thread.people:
            number += 1
            contacts.append(demo.contact(number, person))
        demo.play(thread, contacts)
    # The threads played in the past; their clocks as of now, through the same recomputation a
    # policy change triggers.
    sla.recompute_brand(brand.id, now)
    db.session.flush()
    return True, demo_passwords()
