"""The console's inbox listing: folders, views, filters, sorts and counts, each page in a fixed
number of queries whatever its length (rows, tags and counts are each read in one query)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    case,
    exists,
    func,
    literal,
    or_,
    select,
    true,
)
from sqlalchemy.orm import aliased

from helpdesk.accounts.models import Agent, Membership, Role, Team
from helpdesk.channels.models import Channel
from helpdesk.dm.models import (
    Contact,
    Conversation,
    ConversationStatus,
    Message,
    Participant,
    RequestState,
)
from helpdesk.dm.visibility import visible_states
from helpdesk.errors import NotFound
from helpdesk.extensions import db
from helpdesk.inbox.filters import InboxFilter
from helpdesk.inbox.folders import FOLDERS, folder_condition, folder_name, in_inbox_folders
from helpdesk.inbox.models import ConversationView
from helpdesk.media import copies
from helpdesk.search.matching import contains
from helpdesk.tickets.models import Priority, Tag, Ticket
from helpdesk.tickets.queries import (
    DUE_FIELDS,
    NO_DUE,
    sla_condition,
    sla_due,
    sla_state,
    tagged,
    ticket_tags,
)
from helpdesk.types import UTCDateTime, utcnow

PAGE_SIZE = 50
ACTIVE = (ConversationStatus.OPEN, ConversationStatus.PENDING)


@dataclass
class InboxRow:
    conversation: Conversation
    ticket: Ticket | None
    contact: Contact | None
    assignee: str | None
    team: str | None
    unread: bool
    tags: list[tuple[str, str]] = field(default_factory=list)
    thumbnail_id: int | None = None  # the latest message's picture, when it is one

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


# Query pieces ------------------------------------------------------------------------------------


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
    conditions: list[ColumnElement[bool]] = []
    if f.tag:
        conditions.append(Conversation.current_ticket_id.in_(tagged(brand_id, f.tag)))
    if f.priority:
        conditions.append(Ticket.priority == Priority(f.priority))
    if f.channel_id is not None:
        conditions.append(Conversation.channel_id == f.channel_id)
    if f.sla is not None:
        conditions.append(sla_condition(f.sla, now))
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
            folder_condition(f.folder),
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
    """The tags of each row's ticket, and the thumbnail of its latest picture."""
    tags = ticket_tags([row.ticket.id for row in rows if row.ticket is not None])
    thumbnails = copies.latest_thumbnails([row.conversation.id for row in rows])
    for row in rows:
        row.thumbnail_id = thumbnails.get(row.conversation.id)
        if row.ticket is not None:
            row.tags = tags.get(row.ticket.id, [])


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
        name = folder_name(RequestState(state), folder)
        if name is not None:
            counts[name] += count
    return counts


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
            folder_condition(f.folder),
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


# The REST API's listings --------------------------------------------------------------------------


def assigned_to(brand_id: int, assignee: int | str) -> ColumnElement[bool]:
    """`none`: no current ticket or an unassigned one; an id: that agent's current tickets (the
    console's `unassigned` and `mine` views, for any agent)."""
    if assignee == "none":
        unassigned = select(Ticket.id).where(
            Ticket.brand_id == brand_id, Ticket.assignee_id.is_(None)
        )
        return or_(
            Conversation.current_ticket_id.is_(None),
            Conversation.current_ticket_id.in_(unassigned),
        )
    return Conversation.current_ticket_id.in_(
        select(Ticket.id).where(Ticket.brand_id == brand_id, Ticket.assignee_id == assignee)
    )


def conversation_listing(
    brand_id: int,
    role: Role,
    *,
    request_state: RequestState | str | None = None,
    folder: str | None = None,
    status: ConversationStatus | str | None = None,
    assignee: int | str | None = None,
    tag: str | None = None,
    text: str | None = None,
) -> Select:
    """The brand's conversations, unordered (the caller pages them).

    Without `request_state`, the inbox as the console defines it: its folders Primary, General
    and Requests together, or the one `folder` names. With it, the conversations in that state
    (and stored `folder`), hidden ones only for a role that sees them. `text` matches the
    title, the last message and the contacts' usernames and names, `%` and `_` literally."""
    query = select(Conversation).where(Conversation.brand_id == brand_id)
    if request_state is None:
        query = query.where(folder_condition(folder) if folder else in_inbox_folders())
    else:
        states = visible_states(role, (RequestState(request_state),))
        query = query.where(Conversation.request_state.in_(states))
        if folder:
            query = query.where(Conversation.folder == folder)
    if status is not None:
        query = query.where(Conversation.status == ConversationStatus(status))
    if assignee is not None:
        query = query.where(assigned_to(brand_id, assignee))
    if tag is not None:
        query = query.where(Conversation.current_ticket_id.in_(tagged(brand_id, tag)))
    if text is not None:
        people = (
            select(Participant.id)
            .join(Contact, Contact.id == Participant.contact_id)
            .where(
                Participant.conversation_id == Conversation.id,
                or_(contains(Contact.username, text), contains(Contact.name, text)),
            )
        )
        query = query.where(
            or_(
                contains(Conversation.last_message_preview, text),
                contains(Conversation.title, text),
                exists(people),
            )
        )
    return query


def visible_messages(conversation: Conversation) -> Select:
    """The conversation's messages a reader may see (a blocked contact's never are), unordered."""
    return select(Message).where(
        Message.conversation_id == conversation.id, Message.suppressed.is_(False)
    )


def quotable_message(conversation: Conversation, message_id: int) -> Message | None:
    """A message of this conversation a reply may quote, or None."""
    message = db.session.get(Message, message_id)
    if message is None or message.conversation_id != conversation.id or message.suppressed:
        return None
    return message


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
                in_inbox_folders(),
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
