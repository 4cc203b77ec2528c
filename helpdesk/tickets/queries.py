"""Reading tickets: the one definition of "breached" and "at risk", the tag filter and the
ticket listing, asked alike by the console's inbox and the REST API.

A ticket is **breached** while one of its running SLA clocks is past due, and **at risk** while
one is past its warning point and none is past due. The SLA service stores a clock's times only
while it runs (an active, unpaused ticket), so a stopped clock is neither; the targets a ticket
ever breached stay listed on the ticket itself (`Ticket.breached`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, or_, select

from helpdesk.extensions import db
from helpdesk.tickets.models import Tag, Ticket, TicketStatus, TicketTag
from helpdesk.types import utcnow

DUE_FIELDS = ("first_response", "next_response", "resolution")
SLA_FILTERS = ("at_risk", "breached")
# Sorts after every real due time, so tickets without a running clock come last.
NO_DUE = datetime(9999, 1, 1, tzinfo=UTC)


# SLA state of one ticket (for display) ------------------------------------------------------------


def sla_due(ticket: Ticket | None) -> datetime | None:
    """The earliest due time among the ticket's running clocks."""
    if ticket is None:
        return None
    dues = [getattr(ticket, f"{name}_due_at") for name in DUE_FIELDS]
    return min((due for due in dues if due is not None), default=None)


def sla_state(ticket: Ticket | None, now: datetime | None = None) -> str | None:
    """`breached` past a due time, `at_risk` past a warning time, `ok` otherwise, None: no clock.

    The same rule as `breached()` and `at_risk()` below, for a row already loaded."""
    if ticket is None:
        return None
    now = now or utcnow()
    state = None
    for name in DUE_FIELDS:
        due, warn = getattr(ticket, f"{name}_due_at"), getattr(ticket, f"{name}_warn_at")
        if due is None:
            continue
        if due <= now:
            return "breached"
        if warn is not None and warn <= now:
            state = "at_risk"
        elif state is None:
            state = "ok"
    return state


# SLA state in SQL (for filters) -------------------------------------------------------------------


def _past(column: Any, now: datetime) -> ColumnElement[bool]:
    """`column <= now`, false (never NULL) when the column is empty, so NOT works on it."""
    return and_(column.is_not(None), column <= now)


def breached(now: datetime) -> ColumnElement[bool]:
    """A running clock of the ticket is past due."""
    return or_(*(_past(getattr(Ticket, f"{name}_due_at"), now) for name in DUE_FIELDS))


def at_risk(now: datetime) -> ColumnElement[bool]:
    """A running clock is past its warning point and none is past due."""
    warned = or_(*(_past(getattr(Ticket, f"{name}_warn_at"), now) for name in DUE_FIELDS))
    return and_(warned, ~breached(now))


def sla_condition(sla: str, now: datetime) -> ColumnElement[bool]:
    """The condition of an `sla=` filter: `breached` or `at_risk`."""
    return breached(now) if sla == "breached" else at_risk(now)


# Tags ---------------------------------------------------------------------------------------------


def tagged(brand_id: int, tag: str) -> Select:
    """The ids of the tickets carrying the brand's tag `tag` (its name, whatever the case)."""
    return (
        select(TicketTag.ticket_id)
        .join(Tag, Tag.id == TicketTag.tag_id)
        .where(Tag.brand_id == brand_id, Tag.name_key == tag.lower())
    )


def ticket_tags(ticket_ids: list[int]) -> dict[int, list[tuple[str, str]]]:
    """(name, colour) of every tag on these tickets, in one query."""
    found: dict[int, list[tuple[str, str]]] = {ticket_id: [] for ticket_id in ticket_ids}
    if not ticket_ids:
        return found
    rows = db.session.execute(
        select(TicketTag.ticket_id, Tag.name, Tag.colour)
        .join(Tag, Tag.id == TicketTag.tag_id)
        .where(TicketTag.ticket_id.in_(ticket_ids))
        .order_by(Tag.name_key)
    )
    for ticket_id, name, colour in rows:
        found[ticket_id].append((name, colour))
    return found


def tag_names(tag_ids: Iterable[int]) -> dict[int, str]:
    """Each tag's name by id, in one query."""
    ids = set(tag_ids)
    if not ids:
        return {}
    return dict(db.session.execute(select(Tag.id, Tag.name).where(Tag.id.in_(ids))).all())


# Listing ------------------------------------------------------------------------------------------


def ticket_listing(
    brand_id: int,
    *,
    status: TicketStatus | str | None = None,
    assignee: int | str | None = None,
    tag: str | None = None,
    sla: str | None = None,
    now: datetime | None = None,
) -> Select:
    """The brand's tickets with the filters given (`assignee="none"`: unassigned), unordered: the
    caller pages it."""
    query = select(Ticket).where(Ticket.brand_id == brand_id)
    if status is not None:
        query = query.where(Ticket.status == TicketStatus(status))
    if assignee == "none":
        query = query.where(Ticket.assignee_id.is_(None))
    elif assignee is not None:
        query = query.where(Ticket.assignee_id == assignee)
    if tag is not None:
        query = query.where(Ticket.id.in_(tagged(brand_id, tag)))
    if sla is not None:
        query = query.where(sla_condition(sla, now or utcnow()))
    return query


def tickets_by_id(ticket_ids: Iterable[int]) -> dict[int, Ticket]:
    """These tickets by id, in one query."""
    ids = set(ticket_ids)
    if not ids:
        return {}
    return {row.id: row for row in db.session.scalars(select(Ticket).where(Ticket.id.in_(ids)))}
