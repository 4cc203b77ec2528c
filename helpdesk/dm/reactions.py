"""Reactions: one emoji per person per message."""

from __future__ import annotations

import unicodedata
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from helpdesk.accounts.models import Agent
from helpdesk.dm.conversations import atomic
from helpdesk.dm.models import Contact, Message, Reaction, ReactionRemoval
from helpdesk.errors import InvalidState, ValidationError
from helpdesk.extensions import db
from helpdesk.types import utcnow

# Emoji whose Unicode category is not "other symbol": double exclamation and friends.
_EMOJI_OUTSIDE_SO = frozenset("\u203c\u2049\u2139\u3030\u303d")


def is_emoji(text: str) -> bool:
    """One emoji as platforms send them: pictographs with their skin tones, variation selectors,
    joiners, flag tags and keycaps, and no letters, digits, spaces or punctuation besides."""
    if not text or len(text) > 32:
        return False
    keycap = "\u20e3" in text
    pictograph = False
    for char in text:
        code = ord(char)
        if unicodedata.category(char) == "So" or char in _EMOJI_OUTSIDE_SO:
            pictograph = True
        elif not (
            0x1F3FB <= code <= 0x1F3FF  # skin tones
            or char in "\ufe0e\ufe0f\u200d\u20e3"  # variation selectors, joiner, keycap
            or 0xE0020 <= code <= 0xE007F  # tags of subdivision flags
            or (keycap and char in "#*0123456789")
        ):
            return False
    return pictograph or keycap


def _reactor(contact: Contact | None) -> str:
    return f"contact:{contact.id}" if contact is not None else "brand"


def react(
    message: Message,
    emoji: str,
    contact: Contact | None = None,
    agent: Agent | None = None,
    at: datetime | None = None,
) -> Reaction:
    """One emoji per person per message: reacting again replaces the emoji."""
    if not isinstance(emoji, str) or not is_emoji(emoji):
        raise ValidationError("a reaction is one emoji")
    if message.unsent:
        raise InvalidState("an unsent message cannot be reacted to")
    reactor = _reactor(contact)
    query = select(Reaction).where(Reaction.message_id == message.id, Reaction.reactor == reactor)
    reaction = db.session.scalar(query)
    if reaction is None:
        try:
            with atomic():
                reaction = Reaction(message_id=message.id, reactor=reactor, emoji=emoji)
                db.session.add(reaction)
        except IntegrityError:
            reaction = db.session.scalar(query)
    reaction.emoji = emoji
    reaction.contact_id = contact.id if contact else None
    reaction.agent_id = agent.id if agent else None
    reaction.reacted_at = at or utcnow()
    db.session.flush()
    return reaction


def unreact(message: Message, contact: Contact | None = None) -> bool:
    reaction = db.session.scalar(
        select(Reaction).where(
            Reaction.message_id == message.id, Reaction.reactor == _reactor(contact)
        )
    )
    if reaction is None:
        return False
    db.session.delete(reaction)
    db.session.flush()
    return True


# The platform's reactions --------------------------------------------------------------------
# Meta delivers reactions out of order and retries for hours: a react replayed after its unreact
# must not bring the reaction back. The platform's timestamp orders them, the newest action wins:
# an unreact leaves its time in reaction_removals, and a react no newer than that is stale.


def _removal(message: Message, reactor: str) -> ReactionRemoval | None:
    return db.session.scalar(
        select(ReactionRemoval).where(
            ReactionRemoval.message_id == message.id, ReactionRemoval.reactor == reactor
        )
    )


def react_from_platform(
    message: Message, emoji: str, contact: Contact, at: datetime
) -> Reaction | None:
    """A person's react, as of the platform's time `at`; None when a later action overrides it
    (a removal at or after it, or a reaction newer than it)."""
    reactor = _reactor(contact)
    removal = _removal(message, reactor)
    if removal is not None and removal.removed_at >= at:
        return None
    current = db.session.scalar(
        select(Reaction).where(Reaction.message_id == message.id, Reaction.reactor == reactor)
    )
    if current is not None and current.reacted_at > at:
        return None
    if removal is not None:
        db.session.delete(removal)
    return react(message, emoji, contact=contact, at=at)


def unreact_from_platform(message: Message, contact: Contact, at: datetime) -> bool:
    """A person's unreact, as of the platform's time `at`: remembered, so that an older react
    delivered later stays undone; a reaction newer than it stays."""
    reactor = _reactor(contact)
    removal = _removal(message, reactor)
    if removal is None:
        try:
            with atomic():
                removal = ReactionRemoval(message_id=message.id, reactor=reactor, removed_at=at)
                db.session.add(removal)
        except IntegrityError:
            removal = _removal(message, reactor)
    if removal is not None and removal.removed_at < at:
        removal.removed_at = at
    current = db.session.scalar(
        select(Reaction).where(Reaction.message_id == message.id, Reaction.reactor == reactor)
    )
    if current is None or current.reacted_at > at:
        db.session.flush()
        return False
    return unreact(message, contact=contact)
