"""Automatic assignment per team: round-robin or balanced, only to online agents under capacity.

Capacity must hold with several workers assigning at once, so the chosen agent's brand membership
row is locked and the load counted again before the ticket is taken; the ticket itself is taken
with a conditional UPDATE, so a manual take that lands first is never overwritten.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, case, func, or_, select, update

from helpdesk import hooks
from helpdesk.accounts.actor import Actor
from helpdesk.accounts.models import Agent, Availability, Membership, Team, TeamMember
from helpdesk.database import rows_matched
from helpdesk.errors import ValidationError
from helpdesk.extensions import db
from helpdesk.notifications.models import NotificationKind
from helpdesk.notifications.service import notify
from helpdesk.outgoing.service import emit, ticket_data
from helpdesk.tickets.assignees import unassign
from helpdesk.tickets.events import record_event
from helpdesk.tickets.models import ACTIVE_STATUSES, Ticket
from helpdesk.types import utcnow

MANUAL = "manual"
ROUND_ROBIN = "round_robin"
BALANCED = "balanced"
MODES = (ROUND_ROBIN, BALANCED)  # the automatic ones; a manual team's tickets wait to be taken
TEAM_MODES = (MANUAL, ROUND_ROBIN, BALANCED)


@dataclass(frozen=True)
class Candidate:
    """An eligible agent with the figures the modes choose by, read in the same query."""

    agent: Agent
    load: int  # active tickets assigned to the agent in the team's brand
    team_load: int  # of those, the ones in this team
    last_assigned_at: datetime | None  # last automatic assignment in this team


def _candidates_query(team: Team, agent_id: int | None = None) -> Select:
    """Eligible team members with their loads: one grouped subquery, whatever the team size."""
    members = select(TeamMember.agent_id).where(TeamMember.team_id == team.id)
    if agent_id is not None:
        members = members.where(TeamMember.agent_id == agent_id)
    loads = (
        select(
            Ticket.assignee_id.label("agent_id"),
            func.count().label("load"),
            func.count(case((Ticket.team_id == team.id, 1))).label("team_load"),
        )
        .where(
            Ticket.brand_id == team.brand_id,
            Ticket.status.in_(ACTIVE_STATUSES),
            Ticket.assignee_id.in_(members),
        )
        .group_by(Ticket.assignee_id)
        .subquery()
    )
    load = func.coalesce(loads.c.load, 0)
    team_load = func.coalesce(loads.c.team_load, 0)
    query = (
        select(Agent, load, team_load, TeamMember.last_assigned_at)
        .join(TeamMember, TeamMember.agent_id == Agent.id)
        .join(Team, Team.id == TeamMember.team_id)
        .join(
            Membership,
            (Membership.agent_id == Agent.id) & (Membership.brand_id == Team.brand_id),
        )
        .outerjoin(loads, loads.c.agent_id == Agent.id)
        .where(
            TeamMember.team_id == team.id,
            Agent.active.is_(True),
            Agent.availability == Availability.ONLINE,
            load < Agent.capacity,
            or_(Team.capacity.is_(None), team_load < Team.capacity),
        )
        .order_by(Agent.id)
    )
    if agent_id is not None:
        query = query.where(Agent.id == agent_id)
    return query


def eligible_agents(team: Team) -> list[Candidate]:
    """Team members of the brand who are active, online and below both capacities."""
    return [
        Candidate(agent=agent, load=load, team_load=team_load, last_assigned_at=last)
        for agent, load, team_load, last in db.session.execute(_candidates_query(team))
    ]


def _rotation_key(candidate: Candidate) -> tuple:
    last = candidate.last_assigned_at
    return (last is not None, last or datetime.min, candidate.agent.id)


def _pick(candidates: list[Candidate], mode: str) -> Candidate | None:
    if mode not in MODES:
        raise ValidationError(f"unknown assignment mode {mode!r}")
    if not candidates:
        return None
    if mode == BALANCED:
        return min(candidates, key=lambda c: (c.load, *_rotation_key(c)))
    return min(candidates, key=_rotation_key)


def choose_agent(team: Team, mode: str) -> Agent | None:
    """round_robin: least recently assigned in the team; balanced: fewest active tickets."""
    candidate = _pick(eligible_agents(team), mode)
    return candidate.agent if candidate else None


def _lock(team: Team, agent_id: int, wait: bool) -> bool:
    """Serialise assignments to one agent in the brand; False when someone else holds it.

    The lock is on the agent's membership of the brand, not the team membership: the agent's
    capacity spans every team of the brand, so two teams assigning at once must queue too.
    """
    query = (
        select(Membership.id)
        .where(Membership.agent_id == agent_id, Membership.brand_id == team.brand_id)
        .with_for_update(skip_locked=not wait)
    )
    return db.session.scalar(query) is not None


def _still_eligible(team: Team, agent_id: int) -> bool:
    """Under READ COMMITTED this new statement sees what the previous lock holder committed."""
    return db.session.execute(_candidates_query(team, agent_id)).first() is not None


def _lock_best(team: Team, mode: str, wait: bool) -> tuple[Agent | None, bool]:
    """Lock the best eligible agent nobody else is assigning to; the flag: someone was locked.

    Agents being assigned elsewhere are passed over so that concurrent tickets spread out; only
    when every candidate is busy does `wait` queue behind the best one. Without `wait` nothing
    ever waits, so a transaction holding several of these locks cannot deadlock.
    """
    free = eligible_agents(team)
    busy: list[Candidate] = []
    while free or (wait and busy):
        if free:
            chosen = _pick(free, mode)
            free.remove(chosen)
            if not _lock(team, chosen.agent.id, wait=False):
                busy.append(chosen)
                continue
        else:
            chosen = _pick(busy, mode)
            busy.remove(chosen)
            _lock(team, chosen.agent.id, wait=True)
        if _still_eligible(team, chosen.agent.id):
            return chosen.agent, bool(busy)
    return None, bool(busy)


def _take(
    ticket: Ticket, team: Team, mode: str, now: datetime, wait: bool
) -> tuple[Agent | None, bool]:
    """Assign to the best eligible agent; the flag says the team had nobody to give it to."""
    db.session.flush()
    agent, contended = _lock_best(team, mode, wait)
    if agent is None:
        return None, not contended
    taken = rows_matched(
        update(Ticket)
        .where(
            Ticket.id == ticket.id,
            Ticket.assignee_id.is_(None),
            Ticket.team_id == team.id,
            Ticket.status.in_(ACTIVE_STATUSES),
        )
        .values(assignee_id=agent.id, assigned_at=now)
        .execution_options(synchronize_session=False)
    )
    if not taken:
        return None, False
    db.session.execute(
        update(TeamMember)
        .where(TeamMember.team_id == team.id, TeamMember.agent_id == agent.id)
        .values(last_assigned_at=now)
        .execution_options(synchronize_session=False)
    )
    record_event(ticket, "assigned", data={"assignee_id": agent.id, "auto": True}, at=now)
    notify(
        agent.id,
        ticket.brand_id,
        NotificationKind.ASSIGNMENT,
        f"Ticket #{ticket.id} was assigned to you",
        ticket_id=ticket.id,
        conversation_id=ticket.conversation_id,
        at=now,
    )
    db.session.refresh(ticket)
    emit(ticket.brand_id, "ticket.assigned", ticket_data(ticket, actor_id=None, auto=True))
    return agent, False


def auto_assign(ticket: Ticket, now: datetime) -> Agent | None:
    """Called after a ticket is created or reopened; None when it stays with the team's queue."""
    if not ticket.active or ticket.team_id is None or ticket.assignee_id is not None:
        return None
    team = db.session.get(Team, ticket.team_id)
    if team is None or team.brand_id != ticket.brand_id or team.assignment not in MODES:
        return None
    agent, _ = _take(ticket, team, team.assignment, now, wait=True)
    return agent


def assign_waiting(
    brand_id: int | None = None, now: datetime | None = None, limit: int = 500
) -> int:
    """Catch up on tickets nobody could take when they arrived; returns how many were assigned.

    Waiting tickets and agents are locked with SKIP LOCKED: two runs at once (the worker and a
    resolve in a request) split the queue and never wait on each other, so they cannot deadlock;
    whatever is skipped is picked up by the next run.
    """
    now = now or utcnow()
    query = (
        select(Ticket)
        .join(Team, Team.id == Ticket.team_id)
        .where(
            Team.assignment.in_(MODES),
            Ticket.status.in_(ACTIVE_STATUSES),
            Ticket.team_id.is_not(None),
            Ticket.assignee_id.is_(None),
        )
        .order_by(Ticket.opened_at, Ticket.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=Ticket)
    )
    if brand_id is not None:
        query = query.where(Ticket.brand_id == brand_id)
    full_teams: set[int] = set()
    assigned = 0
    for ticket in db.session.scalars(query).all():
        if ticket.team_id in full_teams:
            continue
        team = db.session.get(Team, ticket.team_id)
        if team is None or team.brand_id != ticket.brand_id:
            continue
        agent, nobody = _take(ticket, team, team.assignment, now, wait=False)
        if agent is not None:
            assigned += 1
        elif nobody:
            full_teams.add(team.id)
    return assigned


def set_availability(
    agent: Agent, availability: Availability | str, now: datetime | None = None
) -> int:
    """An agent coming online takes over waiting tickets at once; returns how many were assigned."""
    try:
        availability = Availability(availability)
    except ValueError as exc:
        raise ValidationError(f"unknown availability {availability!r}") from exc
    agent.availability = availability
    db.session.flush()
    if availability is not Availability.ONLINE or not agent.active:
        return 0
    brand_ids = db.session.scalars(
        select(Membership.brand_id)
        .where(Membership.agent_id == agent.id)
        .order_by(Membership.brand_id)
    ).all()
    return sum(assign_waiting(brand_id, now=now) for brand_id in brand_ids)


def start_shift(agent: Agent, now: datetime | None = None) -> None:
    """Signing in starts a shift: an offline agent comes online and takes waiting tickets; an
    agent who chose "away" stays away."""
    if agent.availability is Availability.OFFLINE:
        set_availability(agent, Availability.ONLINE, now=now)


def release_tickets(agent: Agent, brand_id: int, actor: Actor, now: datetime | None = None) -> int:
    """A deactivated agent's open tickets in the brand are unassigned (each with its ticket
    event, as an unassign by hand), then handed out again like any waiting ticket: to an online
    member of the team, or left in the team's queue. Returns how many were released."""
    now = now or utcnow()
    open_tickets = db.session.scalars(
        select(Ticket)
        .where(
            Ticket.brand_id == brand_id,
            Ticket.assignee_id == agent.id,
            Ticket.status.in_(ACTIVE_STATUSES),
        )
        .order_by(Ticket.id)
    ).all()
    for ticket in open_tickets:
        unassign(ticket, actor, now)
    if open_tickets:
        assign_waiting(brand_id, now=now)
    return len(open_tickets)


def subscribe() -> None:
    """Called by the app factory: tickets and accounts announce, assignment acts (see hooks)."""
    hooks.on(hooks.TICKET_WAITING, auto_assign)
    hooks.on(hooks.TICKET_FINISHED, assign_waiting)
    hooks.on(hooks.AGENT_SIGNED_IN, start_shift)
    hooks.on(hooks.AVAILABILITY_SET, set_availability)
    hooks.on(hooks.AGENT_DEACTIVATED, release_tickets)
