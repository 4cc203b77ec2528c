"""The rules of the DM model (docs/concepts.md), one module per use case; this module gathers
them so callers keep writing `from helpdesk.dm import service as dm; dm.receive_inbound(...)`.
Functions flush; the caller commits.
"""

from helpdesk.dm.conversations import (
    OPEN_REQUEST_STATES,
    PREVIEW_LENGTH,
    VANISH_PREVIEW,
    atomic,
    get_or_create_contact,
    is_known,
    touch_conversation,
)
from helpdesk.dm.edits import edit_message, refresh_preview, unsend_message
from helpdesk.dm.groups import add_participant, create_group, remove_participant
from helpdesk.dm.inbound import InboundMessage, receive_inbound
from helpdesk.dm.notification_settings import notification_level, set_notification_level
from helpdesk.dm.outbound import (
    HUMAN_AGENT_WINDOW,
    STANDARD_WINDOW,
    check_reply_window,
    message_by_mid,
    messages_known,
    needs_human_agent_tag,
    record_echo,
    record_outbound,
    schedule_message,
    window_closes_at,
)
from helpdesk.dm.reactions import is_emoji, react, unreact
from helpdesk.dm.read import leave_thread, mark_read_by_contact, mark_seen_by_brand
from helpdesk.dm.requests import (
    accept_request,
    block_contact,
    block_request,
    decline_request,
    move_to_folder,
    unblock_contact,
)
from helpdesk.dm.vanish import (
    VanishState,
    confirm_vanish_read,
    purge_vanish_messages,
    reveal_vanish_messages,
    set_vanish_mode,
    vanish_state,
)

__all__ = [
    "HUMAN_AGENT_WINDOW",
    "InboundMessage",
    "OPEN_REQUEST_STATES",
    "PREVIEW_LENGTH",
    "STANDARD_WINDOW",
    "VANISH_PREVIEW",
    "VanishState",
    "accept_request",
    "add_participant",
    "atomic",
    "block_contact",
    "block_request",
    "check_reply_window",
    "confirm_vanish_read",
    "create_group",
    "decline_request",
    "edit_message",
    "get_or_create_contact",
    "is_emoji",
    "is_known",
    "leave_thread",
    "mark_read_by_contact",
    "mark_seen_by_brand",
    "message_by_mid",
    "messages_known",
    "move_to_folder",
    "needs_human_agent_tag",
    "notification_level",
    "purge_vanish_messages",
    "react",
    "receive_inbound",
    "record_echo",
    "record_outbound",
    "refresh_preview",
    "remove_participant",
    "reveal_vanish_messages",
    "schedule_message",
    "set_notification_level",
    "set_vanish_mode",
    "touch_conversation",
    "unblock_contact",
    "unreact",
    "unsend_message",
    "vanish_state",
    "window_closes_at",
]
