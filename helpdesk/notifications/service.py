"""In-app notifications, honouring each agent's setting for the conversation."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update

from helpdesk.accounts.profile import receives
from helpdesk.database import rows_matched
from helpdesk.dm.models import NotificationLevel
from helpdesk.dm.service import notification_level
from helpdesk.extensions import db
from helpdesk.live import events as live
from helpdesk.notifications.models import Notification, NotificationKind
from helpdesk.types import utcnow


def notify(
    agent_id: int,
    brand_id: int,
    kind: NotificationKind,
    body: str,
    ticket_id: int | None = None,
    conversation_id: int | None = None,
    at: datetime | None = None,
) -> Notification | None:
    """`off` stores nothing; `muted` stores it without an alert; `all` alerts. A kind the agent
    turned off in /account stores nothing either."""
    if not receives(agent_id, kind):
        return None
    level = (
        notification_level(agent_id, conversation_id)
        if conversation_id is not None
        else NotificationLevel.ALL
    )
    if level is NotificationLevel.OFF:
        return None
    notification = Notification(
        brand_id=brand_id,
        agent_id=agent_id,
        kind=kind,
        body=body,
        ticket_id=ticket_id,
        conversation_id=conversation_id,
        alert=level is NotificationLevel.ALL,
        created_at=at or utcnow(),
    )
    db.session.add(notification)
    db.session.flush()
    live.notification_created(notification)
    return notification


def unread_count(agent_id: int, brand_id: int) -> int:
    return db.session.scalar(
        select(func.count())
        .select_from(Notification)
        .where(
            Notification.agent_id == agent_id,
            Notification.brand_id == brand_id,
            Notification.read_at.is_(None),
            Notification.alert.is_(True),
        )
    )


def list_for(agent_id: int, brand_id: int, limit: int = 50) -> list[Notification]:
    return list(
        db.session.scalars(
            select(Notification)
            .where(Notification.agent_id == agent_id, Notification.brand_id == brand_id)
            .order_by(Notification.id.desc())
            .limit(limit)
        )
    )


def mark_read(agent_id: int, brand_id: int, ids: list[int] | None = None) -> int:
    """Mark the given notifications (or all) read; only the agent's own are touched."""
    query = update(Notification).where(
        Notification.agent_id == agent_id,
        Notification.brand_id == brand_id,
        Notification.read_at.is_(None),
    )
    if ids is not None:
        query = query.where(Notification.id.in_(ids))
    count = rows_matched(
        query.values(read_at=utcnow()).execution_options(synchronize_session=False)
    )
    db.session.flush()
    return count


def find_own(notification_id: int, agent_id: int, brand_id: int) -> Notification | None:
    """The agent's own notification in this brand; anyone else's is None, like no row at all."""
    notification = db.session.get(Notification, notification_id)
    if notification is None or (notification.agent_id, notification.brand_id) != (
        agent_id,
        brand_id,
    ):
        return None
    return notification
