"""The console's inbox listing: folders, views, filters, sorts and counts, each page in a fixed
number of queries whatever its length (rows, tags and counts are each read in one query)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from sqlalchemy import (
    ColumnElement,
    and_,
    case,
    func,
    literal,
    or_,
    select,
    true,
)
from sqlalchemy.orm import aliased

from helpdesk.accounts.models import Agent, Membership, Role, Team
from helpdesk.channels.models import Channel
from helpdesk.dm.models import Contact, Conversation, ConversationStatus, RequestState
from helpdesk.dm.visibility import sees_hidden_requests
from helpdesk.errors import Forbidden, NotFound, ValidationError
from helpdesk.extensions import db
from helpdesk.inbox.models import ConversationView
from helpdesk.tickets.models import Priority, Tag, Ticket, TicketTag
from helpdesk.types import UTCDateTime, utcnow

PAGE_SIZE = 50
FOLDERS = ("primary", "general", "requests", "hidden")
SORTS = ("sla", "newest", "waiting")
SLA_FILTERS = ("at_risk", "breached")
STATUSES = ("active", "open", "pending", "snoozed", "resolved", "closed", "all")
ACTIVE = (ConversationStatus.OPEN, ConversationStatus.PENDING)
INBOX_STATES = (RequestState.NONE, RequestState.ACCEPTED)
# Sorts after every real due time, so tickets without a running clock come last.
NO_DUE = datetime(9999, 1, 1, tzinfo=UTC)
DUE_FIELDS = ("first_response", "next_response", "resolution")


@dataclass(frozen=True)
class InboxFilter:
    """What the agent asked for, already checked against the brand and the agent's role."""

    folder: str = "primary"
    view: str = "all"  # mine | unassigned | all | team:<id>
    status: str = "active"
    tag: str | None = None
    priority: str | None = None
    channel_id: int | None = None
    sla: str | None = None
    sort: str = "sla"
    page: int = 1

    @property
    def team_id(self) -> int | None:
        return int(self.view.split(":", 1)[1]) if self.view.startswith("team:") else None

    def args(self, **changes) -> dict[str, str]:
        """Query arguments for a link to this listing with some changes (defaults left out)."""
        chosen = replace(self, **changes)
        out = {}
        for name, default in InboxFilter.__dataclass_fields__.items():
            value = getattr(chosen, name)
            if value is not None and value != default.default:
                out[name] = str(value)
        return out


@dataclass
class InboxRow:
    conversation: Conversation
    ticket: Ticket | None
    contact: Contact | None
    assignee: str | None
    team: str | None
    unread: bool
    tags: list[tuple[str, str]] = field(default_factory=list)

    @property
    def sla_due(self) -> datetime | None:
        return sla_due(self.ticket)

    @property
    def sla_state(self) -> str | None:
        return sla_state(self.ticket)


@dataclass
class InboxPage:
    filter: InboxFilter
    rows: list[InboxRow]
    has_next: bool
    folder_counts: dict[str, int]
    view_counts: dict[str, int]


# Parsing ------------------------------------------------------------------------------------------


def _choice(value: str | None, allowed: tuple[str, ...], default: str, what: str) -> str:
    value = (value or "").strip().lower() or default
    if value not in allowed:
        raise ValidationError(f"unknown {what} {value!r}")
    return value


def parse_filter(args, brand_id: int, role: Role) -> InboxFilter:
    """Read the query string; ValidationError for a bad value, NotFound for another brand's team
    or channel, Forbidden for the hidden folder below the admin role."""
    folder = _choice(args.get("folder"), FOLDERS, "primary", "folder")
    if folder == "hidden" and not sees_hidden_requests(role):
        raise Forbidden("hidden requests are for admins")
    view = (args.get("view") or "all").strip().lower()
    if view.startswith("team:"):
        team_id = _int(view[5:], "team")
        if (
            db.session.scalar(select(Team.id).where(Team.id == team_id, Team.brand_id == brand_id))
            is None
        ):
            raise NotFound("no such team")
        view = f"team:{team_id}"
    elif view not in ("mine", "unassigned", "all"):
        raise ValidationError(f"unknown view {view!r}")
    channel_id = None
    if args.get("channel"):
        channel_id = _int(args.get("channel"), "channel")
        if (
            db.session.scalar(
                select(Channel.id).where(Channel.id == channel_id, Channel.brand_id == brand_id)
            )
            is None
        ):
            raise NotFound("no such channel")
    priority = args.get("priority") or None
    if priority is not None and priority not in {p.value for p in Priority}:
        raise ValidationError(f"unknown priority {priority!r}")
    sla = args.get("sla") or None
    if sla is not None and sla not in SLA_FILTERS:
        raise ValidationError(f"unknown SLA filter {sla!r}")
    tag = " ".join((args.get("tag") or "").split())[:64] or None
    page = _int(args.get("page") or "1", "page")
    return InboxFilter(
        folder=folder,
        view=view,
        status=_choice(args.get("status"), STATUSES, "active", "status"),
        tag=tag,
        priority=priority,
        channel_id=channel_id,
        sla=sla,
        sort=_choice(args.get("sort"), SORTS, "sla", "sort"),
        page=max(1, min(page, 10_000)),
    )


def _int(value: str | None, what: str) -> int:
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        raise ValidationError(f"the {what} must be a number") from None
    if number < 0 or number > 2**31 - 1:  # past an INTEGER column: PostgreSQL refuses to compare
        raise ValidationError(f"the {what} is out of range")
    return number


# SLA figures --------------------------------------------------------------------------------------


def sla_due(ticket: Ticket | None) -> datetime | None:
    """The earliest due time among the ticket's running clocks."""
    if ticket is None:
        return None
    dues = [getattr(ticket, f"{name}_due_at") for name in DUE_FIELDS]
    return min((due for due in dues if due is not None), default=None)


def sla_state(ticket: Ticket | None, now: datetime | None = None) -> str | None:
    """`breached` past a due time, `at_risk` past a warning time, `ok` otherwise, None: no clock."""
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


def _past(column, now: datetime) -> ColumnElement[bool]:
    """`column <= now`, false (never NULL) when the column is empty, so NOT works on it."""
    return and_(column.is_not(None), column <= now)


def _breached(now: datetime) -> ColumnElement[bool]:
    return or_(*(_past(getattr(Ticket, f"{name}_due_at"), now) for name in DUE_FIELDS))


def _at_risk(now: datetime) -> ColumnElement[bool]:
    warned = or_(*(_past(getattr(Ticket, f"{name}_warn_at"), now) for name in DUE_FIELDS))
    return and_(warned, ~_breached(now))


def _current_ticket(ticket, column) -> ColumnElement:
    """`column` of the conversation's current ticket (`ticket`, an alias of Ticket), looked up by
    primary key row by row: the open backlog comes from the conversations index and each of its
    rows probes one ticket, where a join would read every ticket the brand ever had (a hash join
    over the whole table once tickets outnumber the backlog)."""
    return (
        select(column)
        .where(ticket.id == Conversation.current_ticket_id)
        .correlate(Conversation)
        .scalar_subquery()
    )


def _due_expression() -> ColumnElement:
    """The current ticket's earliest due time in SQL; PostgreSQL calls it least(), SQLite min()."""
    ticket = aliased(Ticket)
    far = literal(NO_DUE, UTCDateTime)
    dues = [func.coalesce(getattr(ticket, f"{name}_due_at"), far) for name in DUE_FIELDS]
    earliest = func.least if db.session.get_bind().dialect.name == "postgresql" else func.min
    return func.coalesce(_current_ticket(ticket, earliest(*dues)), far).label("sla_due")


# Query pieces -------------------------------------------------------------------------------------


def _folder_condition(folder: str) -> ColumnElement[bool]:
    if folder == "requests":
        return Conversation.request_state == RequestState.PENDING
    if folder == "hidden":
        return Conversation.request_state == RequestState.HIDDEN
    return and_(Conversation.folder == folder, Conversation.request_state.in_(INBOX_STATES))


def _status_condition(status: str) -> ColumnElement[bool]:
    if status == "all":
        return true()
    if status == "active":
        return Conversation.status.in_(ACTIVE)
    return Conversation.status == ConversationStatus(status)


def _view_condition(view: str, agent_id: int) -> ColumnElement[bool]:
    if view == "mine":
        return Ticket.assignee_id == agent_id
    if view == "unassigned":
        return Ticket.assignee_id.is_(None)
    if view.startswith("team:"):
        return Ticket.team_id == int(view[5:])
    return true()


def _filters(f: InboxFilter, brand_id: int, now: datetime) -> list[ColumnElement[bool]]:
    conditions = []
    if f.tag:
        tagged = (
            select(TicketTag.ticket_id)
            .join(Tag, Tag.id == TicketTag.tag_id)
            .where(Tag.brand_id == brand_id, Tag.name_key == f.tag.lower())
        )
        conditions.append(Conversation.current_ticket_id.in_(tagged))
    if f.priority:
        conditions.append(Ticket.priority == Priority(f.priority))
    if f.channel_id is not None:
        conditions.append(Conversation.channel_id == f.channel_id)
    if f.sla == "breached":
        conditions.append(_breached(now))
    elif f.sla == "at_risk":
        conditions.append(_at_risk(now))
    return conditions


def _base(brand_id: int):
    return (
        select(Conversation)
        .outerjoin(Ticket, Ticket.id == Conversation.current_ticket_id)
        .where(Conversation.brand_id == brand_id)
    )


def _order(f: InboxFilter) -> list:
    newest = [Conversation.last_message_at.desc().nulls_last(), Conversation.id.desc()]
    if f.sort == "newest":
        return newest
    if f.sort == "waiting":
        return [Ticket.awaiting_since.asc().nulls_last(), *newest]
    return [_due_expression().asc(), *newest]


# Listing ------------------------------------------------------------------------------------------


def inbox_page(
    f: InboxFilter, brand_id: int, agent_id: int, now: datetime | None = None
) -> InboxPage:
    """One page of rows plus the folder and view counts: five queries in all."""
    now = now or utcnow()
    # The page's ids first, sorted on narrow rows; the wide rows are joined for those alone.
    page_ids = _page_ids(f, brand_id, agent_id, now).scalar_subquery()
    rows = _rows(f, brand_id, agent_id, Conversation.id.in_(page_ids))
    has_next = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    _attach_tags(rows)
    return InboxPage(
        filter=f,
        rows=rows,
        has_next=has_next,
        folder_counts=folder_counts(f, brand_id, agent_id),
        view_counts=view_counts(f, brand_id, agent_id),
    )


@dataclass
class InboxRefresh:
    """What an open inbox page needs after live events: the ids its page holds now, in order,
    the rows it must (re)draw, and the counts."""

    order: list[int]
    rows: list[InboxRow]
    has_next: bool
    folder_counts: dict[str, int]
    view_counts: dict[str, int]


def inbox_refresh(
    f: InboxFilter,
    brand_id: int,
    agent_id: int,
    changed: Collection[int],
    shown: Collection[int],
    now: datetime | None = None,
) -> InboxRefresh:
    """The page of `f` as it is now, for a page that shows `shown` and heard that `changed`
    conversations moved: rows are drawn for the changed ones still on the page and for those
    the page does not show yet (they came in, or moved up from the next page); a shown id
    missing from `order` has left this view. The same query and sort as `inbox_page`, so a row
    lands where a reload would put it; five queries in all."""
    now = now or utcnow()
    order = list(db.session.scalars(_page_ids(f, brand_id, agent_id, now)))
    has_next = len(order) > PAGE_SIZE
    order = order[:PAGE_SIZE]
    wanted = (set(changed) | (set(order) - set(shown))) & set(order)
    rows = _rows(f, brand_id, agent_id, Conversation.id.in_(sorted(wanted))) if wanted else []
    _attach_tags(rows)
    return InboxRefresh(
        order=order,
        rows=rows,
        has_next=has_next,
        folder_counts=folder_counts(f, brand_id, agent_id),
        view_counts=view_counts(f, brand_id, agent_id),
    )


def _page_ids(f: InboxFilter, brand_id: int, agent_id: int, now: datetime):
    """The ids of the page's conversations (and one more, to tell a next page), in page order."""
    return (
        _base(brand_id)
        .with_only_columns(Conversation.id)
        .where(
            _folder_condition(f.folder),
            _status_condition(f.status),
            _view_condition(f.view, agent_id),
            *_filters(f, brand_id, now),
        )
        .order_by(*_order(f))
        .limit(PAGE_SIZE + 1)
        .offset((f.page - 1) * PAGE_SIZE)
    )


def _rows(
    f: InboxFilter, brand_id: int, agent_id: int, which: ColumnElement[bool]
) -> list[InboxRow]:
    """The wide rows of the conversations `which` selects, in the listing's order."""
    assignee, team = aliased(Agent), aliased(Team)
    query = (
        _base(brand_id)
        .add_columns(Ticket, Contact, assignee.name, team.name, ConversationView.seen_at)
        .outerjoin(Contact, Contact.id == Conversation.contact_id)
        .outerjoin(assignee, assignee.id == Ticket.assignee_id)
        .outerjoin(team, team.id == Ticket.team_id)
        .outerjoin(
            ConversationView,
            and_(
                ConversationView.conversation_id == Conversation.id,
                ConversationView.agent_id == agent_id,
            ),
        )
        .where(which)
        .order_by(*_order(f))
    )
    return [
        InboxRow(
            conversation=conversation,
            ticket=ticket,
            contact=contact,
            assignee=assignee_name,
            team=team_name,
            unread=conversation.last_inbound_at is not None
            and (seen_at is None or conversation.last_inbound_at > seen_at),
        )
        for conversation, ticket, contact, assignee_name, team_name, seen_at in db.session.execute(
            query
        )
    ]


def _attach_tags(rows: list[InboxRow]) -> None:
    tags = ticket_tags([row.ticket.id for row in rows if row.ticket is not None])
    for row in rows:
        if row.ticket is not None:
            row.tags = tags.get(row.ticket.id, [])


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


def folder_counts(f: InboxFilter, brand_id: int, agent_id: int) -> dict[str, int]:
    """Conversations per folder in the current view and status, in one grouped query.

    Grouped on the stored columns themselves (folded into folders here), so that PostgreSQL
    counts from ix_conversations_counts alone."""
    query = (
        _base(brand_id)
        .with_only_columns(Conversation.request_state, Conversation.folder, func.count())
        .where(_status_condition(f.status), _view_condition(f.view, agent_id))
        .group_by(Conversation.request_state, Conversation.folder)
    )
    counts = dict.fromkeys(FOLDERS, 0)
    for state, folder, count in db.session.execute(query):
        name = _folder_name(RequestState(state), folder)
        if name is not None:
            counts[name] += count
    return counts


def _folder_name(state: RequestState, folder: str) -> str | None:
    """The inbox folder a conversation shows in; None for declined and blocked requests."""
    if state is RequestState.PENDING:
        return "requests"
    if state is RequestState.HIDDEN:
        return "hidden"
    if state in INBOX_STATES:
        return str(folder)
    return None


def view_counts(f: InboxFilter, brand_id: int, agent_id: int) -> dict[str, int]:
    """Conversations per view (mine, unassigned, all, each team) in the current folder and status,
    in one query grouped by team."""
    ticket = aliased(Ticket)
    per_conversation = (
        select(
            _current_ticket(ticket, ticket.team_id).label("team_id"),
            _current_ticket(ticket, ticket.assignee_id).label("assignee_id"),
        )
        .where(
            Conversation.brand_id == brand_id,
            _folder_condition(f.folder),
            _status_condition(f.status),
        )
        # OFFSET keeps this a subquery of its own (PostgreSQL would otherwise inline it and look
        # the assignee up once per aggregate below, not once per conversation).
        .offset(0)
        .subquery()
    )
    assignee = per_conversation.c.assignee_id
    query = select(
        per_conversation.c.team_id,
        func.count(),
        func.sum(case((assignee == agent_id, 1), else_=0)),
        func.sum(case((assignee.is_(None), 1), else_=0)),
    ).group_by(per_conversation.c.team_id)
    counts = {"all": 0, "mine": 0, "unassigned": 0}
    for team_id, total, mine_count, unassigned_count in db.session.execute(query):
        counts["all"] += total
        counts["mine"] += mine_count or 0
        counts["unassigned"] += unassigned_count or 0
        if team_id is not None:
            counts[f"team:{team_id}"] = total
    return counts


def conversations_of_brand(ids: list[int], brand_id: int) -> list[Conversation]:
    """The brand's conversations among `ids`; NotFound if any id is not one of them."""
    ids = sorted(set(ids))
    if not ids:
        return []
    found = list(
        db.session.scalars(
            select(Conversation).where(Conversation.id.in_(ids), Conversation.brand_id == brand_id)
        )
    )
    if len(found) != len(ids):
        raise NotFound("no such conversation")
    return found


def changed_since(brand_id: int, since: datetime) -> int:
    """How many of the brand's inbox conversations moved after `since`: the live-update poll."""
    return (
        db.session.scalar(
            select(func.count())
            .select_from(Conversation)
            .where(
                Conversation.brand_id == brand_id,
                Conversation.last_message_at > since,
                Conversation.request_state.in_((*INBOX_STATES, RequestState.PENDING)),
            )
        )
        or 0
    )


# Choices for forms --------------------------------------------------------------------------------


@dataclass
class BrandLookups:
    """What filter and action menus offer: the brand's agents, teams, tags and channels."""

    agents: list[Agent]
    teams: list[Team]
    tags: list[Tag]
    channels: list[Channel]


def brand_lookups(brand_id: int) -> BrandLookups:
    return BrandLookups(
        agents=list(
            db.session.scalars(
                select(Agent)
                .join(Membership, Membership.agent_id == Agent.id)
                .where(Membership.brand_id == brand_id, Agent.active.is_(True))
                .order_by(func.lower(Agent.name), Agent.id)
            )
        ),
        teams=list(
            db.session.scalars(select(Team).where(Team.brand_id == brand_id).order_by(Team.name))
        ),
        tags=list(
            db.session.scalars(select(Tag).where(Tag.brand_id == brand_id).order_by(Tag.name_key))
        ),
        channels=list(
            db.session.scalars(
                select(Channel).where(Channel.brand_id == brand_id).order_by(Channel.id)
            )
        ),
    )
