"""Imports every model so that metadata (and Alembic) sees the whole schema."""

from helpdesk.accounts.models import Agent, Membership, Role, Team, TeamMember
from helpdesk.brands.models import Brand
from helpdesk.channels.models import Channel, ChannelKind
from helpdesk.dm.models import (
    Contact,
    Conversation,
    Message,
    MessageEdit,
    NotificationSetting,
    Participant,
    Reaction,
)
from helpdesk.heartbeat import Heartbeat

__all__ = [
    "Agent",
    "Brand",
    "Channel",
    "ChannelKind",
    "Contact",
    "Conversation",
    "Heartbeat",
    "Membership",
    "Message",
    "MessageEdit",
    "NotificationSetting",
    "Participant",
    "Reaction",
    "Role",
    "Team",
    "TeamMember",
]
