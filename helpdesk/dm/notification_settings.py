"""Each agent's notification level per conversation."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from helpdesk.accounts.models import Agent
from helpdesk.accounts.service import role_in
from helpdesk.dm.conversations import atomic
from helpdesk.dm.models import Conversation, NotificationLevel, NotificationSetting
from helpdesk.errors import NotFound, ValidationError
from helpdesk.extensions import db


def set_notification_level(
    agent: Agent, conversation: Conversation, level: NotificationLevel | str
) -> NotificationSetting:
    try:
        level = NotificationLevel(level)
    except ValueError:
        raise ValidationError(f"unknown notification level {str(level)[:40]!r}") from None
    if role_in(agent.id, conversation.brand_id) is None:
        raise NotFound("no such conversation")
    query = select(NotificationSetting).where(
        NotificationSetting.agent_id == agent.id,
        NotificationSetting.conversation_id == conversation.id,
    )
    setting = db.session.scalar(query)
    if setting is None:
        try:
            with atomic():
                setting = NotificationSetting(
                    agent_id=agent.id, conversation_id=conversation.id, level=level
                )
                db.session.add(setting)
        except IntegrityError:
            setting = db.session.scalar(query)
    setting.level = level
    db.session.flush()
    return setting


def notification_level(agent_id: int, conversation_id: int) -> NotificationLevel:
    level = db.session.scalar(
        select(NotificationSetting.level).where(
            NotificationSetting.agent_id == agent_id,
            NotificationSetting.conversation_id == conversation_id,
        )
    )
    return level or NotificationLevel.ALL
