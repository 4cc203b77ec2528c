"""Who may see which conversations: one rule for the console, its search and the API.

A request hidden by the brand's filter words often carries spam or abuse, so the brand keeps it
for its admins: below that role it is neither listed, nor found, nor readable.
"""

from __future__ import annotations

from collections.abc import Iterable

from helpdesk.accounts.models import Role
from helpdesk.dm.models import Conversation, RequestState

HIDDEN_REQUESTS_ROLE = Role.ADMIN


def sees_hidden_requests(role: Role) -> bool:
    return role.rank >= HIDDEN_REQUESTS_ROLE.rank


def visible_states(role: Role, states: Iterable[RequestState]) -> tuple[RequestState, ...]:
    """`states` without the hidden one when `role` may not see hidden requests."""
    return tuple(s for s in states if s is not RequestState.HIDDEN or sees_hidden_requests(role))


def may_see(role: Role, conversation: Conversation) -> bool:
    return conversation.request_state in visible_states(role, (conversation.request_state,))
