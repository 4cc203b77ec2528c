"""Brand isolation for every id in a path: another brand's id is answered 404, like no id at all.

Every integer path parameter is checked before the body is read, so a foreign id is a 404 and
never a 422; a new parameter name without an entry in OWNED fails loudly instead of leaking.
"""

from __future__ import annotations

from typing import TypeVar

from flask import g, request

from helpdesk import lookups
from helpdesk.accounts.models import Agent, Team
from helpdesk.accounts.tokens import ApiToken
from helpdesk.automations.models import AutomationRule
from helpdesk.canned.models import CannedReply
from helpdesk.dm.models import Contact, Conversation, Message
from helpdesk.errors import NotFound
from helpdesk.outgoing.models import WebhookSubscription
from helpdesk.sla.models import SlaPolicy
from helpdesk.tickets.models import Tag, Ticket
from helpdesk.web.api.auth import brand_id

Model = TypeVar("Model")

OWNED: dict[str, type] = {
    "conversation_id": Conversation,
    "message_id": Message,
    "ticket_id": Ticket,
    "reply_id": CannedReply,
    "policy_id": SlaPolicy,
    "agent_id": Agent,
    "team_id": Team,
    "subscription_id": WebhookSubscription,
    "token_id": ApiToken,
    "tag_id": Tag,
    "contact_id": Contact,
    "automation_id": AutomationRule,
}


def owned(model: type[Model], row_id: int) -> Model:
    """The row of the token's brand that its role may see, or NotFound (`helpdesk.lookups`);
    remembered for the request, so the view's own call after the check before it costs nothing."""
    seen = g.setdefault("api_owned", {})
    if (model, row_id) not in seen:
        seen[model, row_id] = lookups.owned(model, row_id, brand_id(), g.api_role)
    return seen[model, row_id]


def check_path_ids() -> None:
    """Runs after the token check and before the body is parsed, for every API view."""
    g.api_owned = {}
    for name, value in (request.view_args or {}).items():
        if isinstance(value, str) and "\x00" in value:
            raise NotFound("no such thing")  # no stored name has NUL (PostgreSQL refuses it)
        if not isinstance(value, int):
            continue
        if name not in OWNED:
            raise RuntimeError(f"path parameter {name!r} has no brand check in OWNED")
        owned(OWNED[name], value)
