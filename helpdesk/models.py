"""Imports every model so that metadata (and Alembic) sees the whole schema."""

import helpdesk.metrics.models  # noqa: F401  (metric events, rollups, volume)
from helpdesk.accounts.invitations import Invitation, PasswordReset
from helpdesk.accounts.models import Agent, Membership, Role, Team, TeamMember
from helpdesk.accounts.tokens import ApiToken
from helpdesk.audit.models import AuditEvent
from helpdesk.automations.models import AutomationRule, AutomationRun
from helpdesk.brands.models import Brand
from helpdesk.canned.models import CannedReply
from helpdesk.channels.models import (
    Backfill,
    Channel,
    ChannelKind,
    DataDeletionRequest,
    OAuthState,
)
from helpdesk.dm.models import (
    Contact,
    Conversation,
    Message,
    MessageEdit,
    NotificationSetting,
    Participant,
    Reaction,
    ReactionRemoval,
)
from helpdesk.heartbeat import Heartbeat
from helpdesk.idempotency.models import IdempotencyKey
from helpdesk.inbox.models import ConversationView
from helpdesk.intake.models import PendingAction, UnknownAccount, WebhookEvent
from helpdesk.live.models import LiveEvent, Presence
from helpdesk.logins.models import LoginAttempt
from helpdesk.media.models import MediaObject
from helpdesk.notifications.models import Notification
from helpdesk.outgoing.models import WebhookDelivery, WebhookSubscription
from helpdesk.search.models import messages_text_fts
from helpdesk.sla.models import BusinessHours, SlaPolicy, SlaReminder
from helpdesk.tickets.models import (
    Note,
    RoutingRule,
    Tag,
    TagRule,
    Ticket,
    TicketEvent,
    TicketPause,
    TicketTag,
)

__all__ = [
    "AutomationRule",
    "AutomationRun",
    "MediaObject",
    "Backfill",
    "DataDeletionRequest",
    "OAuthState",
    "ReactionRemoval",
    "AuditEvent",
    "Agent",
    "Invitation",
    "PasswordReset",
    "ConversationView",
    "LiveEvent",
    "LoginAttempt",
    "Presence",
    "messages_text_fts",
    "ApiToken",
    "PendingAction",
    "UnknownAccount",
    "WebhookDelivery",
    "WebhookEvent",
    "WebhookSubscription",
    "BusinessHours",
    "CannedReply",
    "Note",
    "Notification",
    "RoutingRule",
    "SlaPolicy",
    "SlaReminder",
    "Tag",
    "TagRule",
    "Ticket",
    "TicketEvent",
    "TicketPause",
    "TicketTag",
    "Brand",
    "Channel",
    "ChannelKind",
    "Contact",
    "Conversation",
    "Heartbeat",
    "IdempotencyKey",
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
