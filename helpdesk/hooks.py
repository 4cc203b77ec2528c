"""What a service announces for the services that build on it: publish and subscribe, in process.

SLA clocks and assignment build on tickets (they read its models and record its events), yet
every ticket change must refresh the clocks and may hand the ticket to an agent. Called directly,
that is a cycle between the packages, which used to hide behind imports inside functions (and
accounts and assignment form a real import cycle through notifications and dm). Here tickets and
accounts only publish what happened; sla and assignment subscribe once, when the app factory
calls their `subscribe()`, so the arrows point one way again.

Handlers run at once, in the publisher's transaction and in the order they subscribed, exactly as
the direct calls did; an exception in a handler reaches the publisher.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any

# A ticket changed in a way that may move its clocks (status, priority, team, tags, a message).
TICKET_CHANGED = "ticket.changed"
# The same for many tickets at once (`tickets`: the intake's batches), flushed.
TICKETS_CHANGED = "tickets.changed"
# An active ticket of a team has no assignee (opened, reopened, or moved to a team).
TICKET_WAITING = "ticket.waiting"
# A ticket was resolved or closed: its agent may have room for a waiting one.
TICKET_FINISHED = "ticket.finished"
# A ticket was resolved (any way: console, API, bulk, automation): its survey may be scheduled.
TICKET_RESOLVED = "ticket.resolved"
# An agent signed in (a shift starts).
AGENT_SIGNED_IN = "agent.signed_in"
# A manager set an agent's availability (online, away, offline).
AVAILABILITY_SET = "agent.availability_set"
# An admin deactivated an agent: their open tickets in the brand go back to their teams' queues.
AGENT_DEACTIVATED = "agent.deactivated"
# A channel's token works again (reconnected): replies that waited for it may go.
CHANNEL_RECONNECTED = "channel.reconnected"
# A channel was connected for the first time: its recent history may be read.
CHANNEL_CONNECTED = "channel.connected"
# The platform refused a channel's token: sends stop and admins are told (once per outage).
CHANNEL_NEEDS_RECONNECT = "channel.needs_reconnect"
# Automations (helpdesk.automations.engine) hear these. A customer message landed on a ticket:
MESSAGE_RECEIVED = "ticket.message_received"
# A ticket was opened.
TICKET_CREATED = "ticket.created"
# An agent or the API changed a ticket's status, priority, team, assignee or tags (`actor`).
TICKET_UPDATED = "ticket.updated"

Handler = Callable[..., Any]
_handlers: dict[str, list[Handler]] = {}


def on(event: str, handler: Handler) -> None:
    """Subscribe; subscribing the same handler again (every app the factory makes) is a no-op."""
    handlers = _handlers.setdefault(event, [])
    if handler not in handlers:
        handlers.append(handler)


def publish(event: str, **data: Any) -> None:
    """Call every handler of `event` with `data` as keyword arguments."""
    changed = _changed_tickets.get()
    if event == TICKET_CHANGED and changed is not None:
        changed[data["ticket"].id] = data["ticket"]
        return
    for handler in list(_handlers.get(event, ())):
        handler(**data)


_changed_tickets: ContextVar[dict[int, Any] | None] = ContextVar("changed_tickets", default=None)


@contextmanager
def ticket_changes_together(now: datetime) -> Iterator[None]:
    """For an intake batch: inside, TICKET_CHANGED only notes its ticket; at the end (if nothing
    failed) TICKETS_CHANGED is published once for all of them, so each ticket's clocks are
    computed once, with its brand's, from the ticket's final state. Nothing inside reads them."""
    changed: dict[int, Any] = {}
    token = _changed_tickets.set(changed)
    try:
        yield
    finally:
        _changed_tickets.reset(token)
    if changed:
        publish(TICKETS_CHANGED, tickets=list(changed.values()), now=now)
