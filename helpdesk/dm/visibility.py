"""Who may see which conversations: one rule for the console, its search and the API.

A request hidden by the brand's filter words often carries spam or abuse, so the brand keeps it
for its admins: below that role it is neither listed, nor found, nor readable.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select

from helpdesk.accounts.actor import Actor
from helpdesk.accounts.models import Role
from helpdesk.dm.models import Contact, Conversation, Message, Participant, RequestState
from helpdesk.errors import NotFound
from helpdesk.extensions import db

HIDDEN_REQUESTS_ROLE = Role.ADMIN


def sees_hidden_requests(role: Role) -> bool:
    return role.rank >= HIDDEN_REQUESTS_ROLE.rank


def visible_states(role: Role, states: Iterable[RequestState]) -> tuple[RequestState, ...]:
    """`states` without the hidden one when `role` may not see hidden requests."""
    return tuple(s for s in states if s is not RequestState.HIDDEN or sees_hidden_requests(role))


def may_see(role: Role, conversation: Conversation) -> bool:
    return conversation.request_state in visible_states(role, (conversation.request_state,))


def conversation_for(actor: Actor, conversation_id: int) -> Conversation:
    """A conversation of the actor's brand that they may read: another brand's is NotFound, like
    no row at all; a hidden request below its role is Forbidden."""
    conversation = db.session.get(Conversation, conversation_id)
    if conversation is None or conversation.brand_id != actor.brand_id:
        raise NotFound("no such conversation")
    if not actor.is_system and not may_see(actor.role, conversation):
        actor.require(HIDDEN_REQUESTS_ROLE, "This")
    return conversation


def message_in(conversation: Conversation, message_id: int) -> Message | None:
    """A message of this thread that may be shown (a blocked contact's never is)."""
    message = db.session.get(Message, message_id)
    if message is None or message.conversation_id != conversation.id or message.suppressed:
        return None
    return message


def contact_in(conversation: Conversation, contact_id: int) -> Contact | None:
    """The direct thread's contact, or a member of a group thread; anyone else is None."""
    contact = db.session.get(Contact, contact_id)
    if contact is None or contact.brand_id != conversation.brand_id:
        return None
    if contact.id != conversation.contact_id and not db.session.scalar(
        select(Participant.id).where(
            Participant.conversation_id == conversation.id, Participant.contact_id == contact.id
        )
    ):
        return None
    return contact
