"""Vanish mode in the console: an agent reveals the ephemeral messages only when ready to answer,
and may confirm having read them so that they vanish without a reply."""

from __future__ import annotations

from flask import url_for
from flask.typing import ResponseReturnValue

from helpdesk.dm import service as dm
from helpdesk.live import events
from helpdesk.web.console import bp
from helpdesk.web.console.context import conversation_or_404, perform


@bp.post("/conversations/<int:conversation_id>/vanish/reveal")
def reveal_vanish(conversation_id: int) -> ResponseReturnValue:
    """A POST, since seeing the messages is what starts their purge."""
    conversation = conversation_or_404(conversation_id)
    return perform(
        lambda: _announced(dm.reveal_vanish_messages(conversation)),
        None,
        url_for(".conversation", conversation_id=conversation.id),
    )


@bp.post("/conversations/<int:conversation_id>/vanish/read")
def confirm_vanish_read(conversation_id: int) -> ResponseReturnValue:
    conversation = conversation_or_404(conversation_id)
    return perform(
        lambda: dm.confirm_vanish_read(conversation),
        "Marked as read: these messages disappear once you leave the conversation.",
        url_for(".conversation", conversation_id=conversation.id),
    )


def _announced(revealed: list) -> list:
    """Colleagues with the thread open see the content instead of the placeholder."""
    for message in revealed:
        events.message_updated(message)
    return revealed
