"""The two-week history the metrics, dashboard and security tests measure: built through the
webhook intake and the console, so every figure can be checked against arithmetic done by hand.

The brand is in Europe/Berlin (UTC+1 in November) and open Mon-Fri 09:00-17:00 local, which is
08:00-16:00 UTC. All times below are UTC. The policy: first response 60 business minutes,
resolution 480 business minutes.

T1 (contact 1, team Support): Mon 11-09 08:30 customer; 08:31 assigned to A; 08:50 A replies;
    09:00 and 09:05 customer; 10:00 A replies; 11:00 A resolves.
T3 (contact 3, team Support, tag vip): Tue 11-10 08:00 customer; assigned to B; 08:45 B replies;
    09:00 B sets pending; Wed 14:00 customer (wakes it: the intake does so at processing time,
    today, which raw durations ignore anyway); 15:30 B replies; Thu 10:00 B resolves.
T4 (contact 4): Thu 11-12 16:30 customer (17:30 local, closed); never answered, unassigned.
T2 (contact 2, tags vip + shipping): Fri 11-13 15:00 customer; SLA sweep Fri 16:30 (T2's first
    response was due 16:00, T4's at Fri 09:00 and its resolution at Fri 16:00: all breached);
    Fri 23:30 reply from the Instagram app (Sat 00:30 local); Sat 10:00 customer; Mon 11-16 08:30
    app reply; 08:40 assigned to B; 09:00 B resolves; Tue 11-17 10:00 customer (reopens);
    11:00 A replies; 12:00 B resolves again.
T5 (contact 5, second channel): Wed 11-18 08:00 customer; 08:05 assigned to A; 08:10 app reply;
    09:00 customer; 09:20 app reply. Still open.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from itertools import count

from sqlalchemy import select

from helpdesk.accounts.models import Role
from helpdesk.accounts.service import add_team_member, create_team
from helpdesk.brands.models import Brand
from helpdesk.channels.service import connect_channel
from helpdesk.dm.models import Conversation
from helpdesk.extensions import db
from helpdesk.inbox import service as inbox
from helpdesk.sla import service as sla
from helpdesk.tickets import service as tickets
from helpdesk.tickets.models import Ticket, TicketStatus
from helpdesk.tickets.tags import add_tag
from tests.factories import AgentFactory, BrandFactory, ContactFactory, at, member
from tests.helpers.webhooks import post, process_all
from workers.tasks.metrics import record_ticket_metrics, sweep_metrics

ACCOUNT = "17841400000000001"
SECOND_ACCOUNT = "17841400000000002"
WEEKDAY_HOURS = [["09:00", "17:00"]]
CALENDAR = {
    "timezone": "Europe/Berlin",
    "weekly": {day: WEEKDAY_HOURS for day in ("mon", "tue", "wed", "thu", "fri")},
    "holidays": [],
}
FIRST = date(2026, 11, 9)  # Monday
LAST = date(2026, 11, 22)  # Sunday
_mids = count(1)


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def _deliver(client, account: str, sender: str, recipient: str, when: datetime, **message):
    message["mid"] = f"m-metrics-{next(_mids):05d}"
    body = {
        "object": "instagram",
        "entry": [
            {
                "id": account,
                "time": _ms(when),
                "messaging": [
                    {
                        "sender": {"id": sender},
                        "recipient": {"id": recipient},
                        "timestamp": _ms(when),
                        "message": message,
                    }
                ],
            }
        ],
    }
    response = post(client, json.dumps(body).encode())
    assert response.status_code == 200, response.get_data(as_text=True)
    process_all()


class History:
    """The brand, its people and the helpers that write its history in time order."""

    def __init__(self, client) -> None:
        self.client = client
        brand = BrandFactory(timezone="Europe/Berlin")
        self.brand_id = brand.id
        self.channel = connect_channel(brand, "instagram", ACCOUNT, "token", name="Main")
        self.second = connect_channel(brand, "instagram", SECOND_ACCOUNT, "token2", name="Outlet")
        self.contacts = {
            n: ContactFactory(
                channel=self.second if n == 5 else self.channel,
                platform_id=f"612000000000000{n}",
                followed_by_brand=True,
            )
            for n in range(1, 6)
        }
        self.manager = AgentFactory(name="Mia Manager")
        self.a = AgentFactory(name="Ada Agent")
        self.b = AgentFactory(name="Ben Agent")
        member(self.manager, brand, Role.MANAGER)
        member(self.a, brand)
        member(self.b, brand)
        sla.set_calendar(brand, self.manager, CALENDAR, now=at("2026-11-01 00:00"))
        sla.create_policy(
            brand,
            self.manager,
            "Standard",
            0,
            {},
            {"first_response_min": 60, "resolution_min": 480},
            business_hours=True,
            now=at("2026-11-01 00:00"),
        )
        self.team = create_team(brand, "Support")
        add_team_member(self.team, self.a)
        add_team_member(self.team, self.b)
        db.session.commit()

    @property
    def brand(self) -> Brand:
        return db.session.get(Brand, self.brand_id)

    def _account(self, n: int) -> str:
        return SECOND_ACCOUNT if n == 5 else ACCOUNT

    def customer(self, n: int, when: str) -> None:
        platform_id = self.contacts[n].platform_id
        _deliver(self.client, self._account(n), platform_id, self._account(n), at(when), text="hi")

    def app_reply(self, n: int, when: str) -> None:
        platform_id = self.contacts[n].platform_id
        account = self._account(n)
        _deliver(self.client, account, account, platform_id, at(when), text="ok", is_echo=True)

    def ticket(self, n: int) -> Ticket:
        db.session.expire_all()
        conversation = db.session.scalar(
            select(Conversation).where(Conversation.contact_id == self.contacts[n].id)
        )
        return db.session.get(Ticket, conversation.current_ticket_id)

    def reply(self, n: int, agent, when: str) -> None:
        ticket = self.ticket(n)
        conversation = db.session.get(Conversation, ticket.conversation_id)
        inbox.reply(conversation, agent, text="on it", now=at(when))
        db.session.commit()

    def assign(self, n: int, agent, when: str) -> None:
        tickets.assign(self.ticket(n), agent.id, self.manager, now=at(when))
        db.session.commit()

    def status(self, n: int, status: TicketStatus, agent, when: str) -> None:
        tickets.set_status(self.ticket(n), status, agent, now=at(when))
        db.session.commit()

    def build(self) -> None:
        self.customer(1, "2026-11-09 08:30")
        self.assign(1, self.a, "2026-11-09 08:31")
        tickets.set_team(self.ticket(1), self.team.id, self.manager, now=at("2026-11-09 08:31"))
        db.session.commit()
        self.reply(1, self.a, "2026-11-09 08:50")
        self.customer(1, "2026-11-09 09:00")
        self.customer(1, "2026-11-09 09:05")
        self.reply(1, self.a, "2026-11-09 10:00")
        self.status(1, TicketStatus.RESOLVED, self.a, "2026-11-09 11:00")

        self.customer(3, "2026-11-10 08:00")
        self.assign(3, self.b, "2026-11-10 08:01")
        add_tag(self.ticket(3), "vip", self.b)
        tickets.set_team(self.ticket(3), self.team.id, self.manager, now=at("2026-11-10 08:01"))
        db.session.commit()
        self.reply(3, self.b, "2026-11-10 08:45")
        self.status(3, TicketStatus.PENDING, self.b, "2026-11-10 09:00")
        self.customer(3, "2026-11-11 14:00")
        self.reply(3, self.b, "2026-11-11 15:30")
        self.status(3, TicketStatus.RESOLVED, self.b, "2026-11-12 10:00")

        self.customer(4, "2026-11-12 16:30")

        self.customer(2, "2026-11-13 15:00")
        add_tag(self.ticket(2), "vip", self.manager)
        add_tag(self.ticket(2), "shipping", self.manager)
        db.session.commit()
        sla.sweep_sla(now=at("2026-11-13 16:30"))
        db.session.commit()
        self.app_reply(2, "2026-11-13 23:30")
        self.customer(2, "2026-11-14 10:00")
        self.app_reply(2, "2026-11-16 08:30")
        self.assign(2, self.b, "2026-11-16 08:40")
        self.status(2, TicketStatus.RESOLVED, self.b, "2026-11-16 09:00")
        self.customer(2, "2026-11-17 10:00")
        self.reply(2, self.a, "2026-11-17 11:00")
        self.status(2, TicketStatus.RESOLVED, self.b, "2026-11-17 12:00")

        self.customer(5, "2026-11-18 08:00")
        self.assign(5, self.a, "2026-11-18 08:05")
        self.app_reply(5, "2026-11-18 08:10")
        self.customer(5, "2026-11-18 09:00")
        self.app_reply(5, "2026-11-18 09:20")

    def ticket_ids(self) -> list[int]:
        return [self.ticket(n).id for n in range(1, 6)]

    def run_workers(self) -> None:
        """What the workers do: the enqueued task per ticket, then the sweep (volume)."""
        for ticket_id in self.ticket_ids():
            record_ticket_metrics(ticket_id)
        sweep_metrics()
