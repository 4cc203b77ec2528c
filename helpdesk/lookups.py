"""Rows by id for a brand: another brand's row, or one the role may not see, is not found, so a
caller can never tell it from a missing one. The API checks every id of a path with it."""

from __future__ import annotations

from typing import Any, TypeVar

from helpdesk.accounts.models import Agent, Role, Team
from helpdesk.accounts.service import role_in
from helpdesk.accounts.tokens import ApiToken
from helpdesk.canned.models import CannedReply
from helpdesk.dm.models import Conversation, Message
from helpdesk.dm.visibility import may_see
from helpdesk.errors import NotFound
from helpdesk.extensions import db
from helpdesk.outgoing.models import WebhookSubscription
from helpdesk.sla.models import SlaPolicy
from helpdesk.tickets.models import Tag, Ticket

Model = TypeVar("Model")

NAMES: dict[type, str] = {
    Conversation: "conversation",
    Message: "message",
    Ticket: "ticket",
    CannedReply: "canned reply",
    SlaPolicy: "SLA policy",
    Agent: "agent",
    Team: "team",
    WebhookSubscription: "webhook subscription",
    ApiToken: "API token",
    Tag: "tag",
}


def _visible(row: Any, brand_id: int, role: Role) -> bool:
    if isinstance(row, Agent):
        return role_in(row.id, brand_id) is not None
    if row.brand_id != brand_id:
        return False
    if isinstance(row, CannedReply):
        return row.owner_id is None  # agents' personal replies are theirs alone
    if isinstance(row, Message):
        if row.suppressed:  # a blocked contact's messages are never shown
            return False
        return may_see(role, db.session.get(Conversation, row.conversation_id))
    if isinstance(row, Conversation):
        return may_see(role, row)  # hidden requests: admins only, as in the console
    return True


def owned(model: type[Model], row_id: int, brand_id: int, role: Role) -> Model:
    """The brand's row of `model` with this id that `role` may see, or NotFound."""
    row = db.session.get(model, row_id)
    if row is None or not _visible(row, brand_id, role):
        raise NotFound(f"no such {NAMES.get(model, 'thing')}")
    return row
