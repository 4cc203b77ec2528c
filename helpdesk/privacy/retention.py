"""Retention: a brand that keeps conversations for N days loses, every day, the content older
than that, as an erase would lose it, while its tickets, their history and the metric figures
stay.

What goes, per brand: the text, attachments (media links and stored copies) and platform extras of
every message (inbound and outbound) sent before the cutoff, the texts its edits replaced and the
reactions to it; the copies and uploads no message carries made before the cutoff; the raw webhook
deliveries of the brand's accounts received before the cutoff; live events, actions still waiting
for a message, and cached API answers written before it; the text and attachments of outgoing
webhook deliveries queued before it; the text of notes and of mention notifications written before
it (the agents' own words about the customer, often quoting them). Conversation previews follow. A
purged message keeps its row, marked by `purged_at` (the column vanish mode sets for the same
meaning: the content was purged then), so a second run skips it. The full-text search index is an
expression over the message's text: it follows.

The work is committed in batches, so a large first purge never holds one long transaction.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update

from helpdesk.audit.models import AuditEvent
from helpdesk.audit.service import record
from helpdesk.brands.models import Brand
from helpdesk.channels.models import Channel
from helpdesk.database import rows_matched
from helpdesk.dm.edits import _erase_content, refresh_preview
from helpdesk.dm.models import Message, MessageEdit, MessageStatus, Reaction, ReactionRemoval
from helpdesk.extensions import db
from helpdesk.idempotency.models import IdempotencyKey
from helpdesk.intake.models import PendingAction, WebhookEvent
from helpdesk.live.models import LiveEvent
from helpdesk.media import copies
from helpdesk.notifications.models import Notification, NotificationKind
from helpdesk.outgoing.models import WebhookDelivery
from helpdesk.tickets.models import Note
from helpdesk.types import utcnow

ACTION = "brand.retention_purged"
EXPIRED = "[expired]"
BATCH_SIZE = 500
# A message still on its way out keeps its content until it is sent (or given up).
WAITING = (MessageStatus.SCHEDULED, MessageStatus.QUEUED, MessageStatus.SENDING)
MENTION = re.compile(r"^(.*? mentioned you on ticket #\d+): ", re.DOTALL)


@dataclass
class Purge:
    """What one run purged for one brand: counts only, so it can be shown and audited."""

    messages: int = 0
    edits: int = 0
    reactions: int = 0
    raw_deliveries: int = 0
    pending_actions: int = 0
    live_events: int = 0
    outgoing_deliveries: int = 0
    notes: int = 0
    notifications: int = 0
    cached_answers: int = 0
    media_files: int = 0

    @property
    def anything(self) -> bool:
        return any(asdict(self).values())


@dataclass
class BrandPurge:
    brand_id: int
    brand_name: str
    cutoff: datetime
    purged: Purge


def purge_expired(
    now: datetime | None = None, brand_id: int | None = None, batch_size: int = BATCH_SIZE
) -> list[BrandPurge]:
    """Purge every brand with a retention period (or only `brand_id`), committing as it goes:
    callers are the daily task and `flask purge-expired`, not a request."""
    now = now or utcnow()
    query = select(Brand.id, Brand.name, Brand.retention_days).where(
        Brand.retention_days.is_not(None)
    )
    if brand_id is not None:
        query = query.where(Brand.id == brand_id)
    brands = db.session.execute(query.order_by(Brand.id)).all()
    db.session.commit()
    report = []
    for id_, name, days in brands:
        cutoff = now - timedelta(days=days)
        purged = _purge_brand(id_, cutoff, batch_size)
        if purged.anything:
            record(None, id_, ACTION, "brand", id_,
                   {"purged": [None, asdict(purged)], "older_than": [None, cutoff.isoformat()]},
                   label=name, at=now)  # fmt: skip
        db.session.commit()
        report.append(BrandPurge(id_, name, cutoff, purged))
    return report


def last_purge(brand_id: int) -> AuditEvent | None:
    """The latest run that purged something for the brand (for the privacy page)."""
    return db.session.scalar(
        select(AuditEvent)
        .where(AuditEvent.brand_id == brand_id, AuditEvent.action == ACTION)
        .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
        .limit(1)
    )


def _purge_brand(brand_id: int, cutoff: datetime, batch_size: int) -> Purge:
    purged = Purge()
    while _purge_message_batch(brand_id, cutoff, batch_size, purged):
        db.session.commit()
    accounts = set(
        db.session.scalars(select(Channel.account_id).where(Channel.brand_id == brand_id))
    )
    channels = list(db.session.scalars(select(Channel.id).where(Channel.brand_id == brand_id)))
    purged.raw_deliveries = _purge_raw_deliveries(accounts, cutoff, batch_size)
    purged.pending_actions = rows_matched(
        delete(PendingAction)
        .where(PendingAction.channel_id.in_(channels), PendingAction.created_at < cutoff)
        .execution_options(synchronize_session=False)
    )
    purged.live_events = rows_matched(
        delete(LiveEvent)
        .where(LiveEvent.brand_id == brand_id, LiveEvent.created_at < cutoff)
        .execution_options(synchronize_session=False)
    )
    purged.cached_answers = rows_matched(
        delete(IdempotencyKey)
        .where(IdempotencyKey.brand_id == brand_id, IdempotencyKey.created_at < cutoff)
        .execution_options(synchronize_session=False)
    )
    purged.outgoing_deliveries = _purge_outgoing(brand_id, cutoff)
    purged.media_files += copies.purge_unattached(brand_id, cutoff)
    purged.notes, purged.notifications = _purge_notes(brand_id, cutoff)
    return purged


# Messages -----------------------------------------------------------------------------------------


def _expired_messages(brand_id: int, cutoff: datetime, limit: int):
    return (
        select(Message)
        .where(
            Message.brand_id == brand_id,
            Message.purged_at.is_(None),
            func.coalesce(Message.sent_at, Message.created_at) < cutoff,
            Message.status.not_in(WAITING),
        )
        .order_by(Message.id)
        .limit(limit)
    )


def _purge_message_batch(brand_id: int, cutoff: datetime, limit: int, purged: Purge) -> bool:
    """One batch of expired messages; False when none was left."""
    messages = db.session.scalars(_expired_messages(brand_id, cutoff, limit)).all()
    if not messages:
        return False
    ids = [m.id for m in messages]
    purged.edits += db.session.scalar(
        select(func.count())
        .select_from(MessageEdit)
        .where(MessageEdit.message_id.in_(ids), MessageEdit.previous_text.is_not(None))
    )
    now = utcnow()
    for message in messages:
        _erase_content(message)
        message.purged_at = now
    purged.messages += len(messages)
    purged.media_files += copies.purge_messages(ids)
    # The emoji of a reaction is someone's content too, and answers a message that is gone.
    purged.reactions += rows_matched(
        delete(Reaction)
        .where(Reaction.message_id.in_(ids))
        .execution_options(synchronize_session=False)
    )
    db.session.execute(
        delete(ReactionRemoval)
        .where(ReactionRemoval.message_id.in_(ids))
        .execution_options(synchronize_session=False)
    )
    db.session.flush()
    for conversation_id in sorted({m.conversation_id for m in messages}):
        refresh_preview(conversation_id)
    db.session.flush()
    return True


# Raw deliveries -----------------------------------------------------------------------------------


def _purge_raw_deliveries(accounts: set[str], cutoff: datetime, batch_size: int) -> int:
    """Deliveries received before the cutoff lose the entries of the brand's accounts; one left
    without entries is deleted. Another brand's entries in the same delivery stay."""
    if not accounts:
        return 0
    changed, after = 0, 0
    while True:
        rows = db.session.scalars(
            select(WebhookEvent)
            .where(WebhookEvent.received_at < cutoff, WebhookEvent.id > after)
            .order_by(WebhookEvent.id)
            .limit(batch_size)
        ).all()
        if not rows:
            return changed
        for row in rows:
            if accounts & {str(a) for a in row.account_ids or []}:
                changed += _scrub_raw(row, accounts)
        after = rows[-1].id
        db.session.commit()


def _scrub_raw(row: WebhookEvent, accounts: set[str]) -> int:
    try:
        body = json.loads(row.body)
    except ValueError:
        body = None
    entries = body.get("entry") if isinstance(body, dict) else None
    if not isinstance(entries, list):
        db.session.delete(row)  # unreadable, and of the brand's account: nothing to keep
        return 1
    kept = [e for e in entries if not (isinstance(e, dict) and str(e.get("id")) in accounts)]
    if len(kept) == len(entries):
        return 0
    if not kept:
        db.session.delete(row)
        return 1
    row.body = json.dumps({**body, "entry": kept}, ensure_ascii=False)
    row.account_ids = [a for a in row.account_ids or [] if str(a) not in accounts]
    row.error = None
    return 1


# Outgoing deliveries, notes -----------------------------------------------------------------------


def _purge_outgoing(brand_id: int, cutoff: datetime) -> int:
    """The log row stays (the receiver has it; the log says when it went), without content."""
    changed = 0
    for delivery in db.session.scalars(
        select(WebhookDelivery).where(
            WebhookDelivery.brand_id == brand_id, WebhookDelivery.created_at < cutoff
        )
    ):
        cleaned = _without_content(delivery.payload)
        if cleaned != delivery.payload:
            delivery.payload = cleaned
            changed += 1
    return changed


def _without_content(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: (None if key == "text" and item is not None
                  else [] if key == "attachments" and item
                  else _without_content(item))
            for key, item in value.items()
        }  # fmt: skip
    if isinstance(value, list):
        return [_without_content(item) for item in value]
    return value


def _purge_notes(brand_id: int, cutoff: datetime) -> tuple[int, int]:
    """Notes are the agents' words, but about the customer and often quoting them: their text
    expires with the messages. So does the excerpt a mention notification carries."""
    notes = rows_matched(
        update(Note)
        .where(Note.brand_id == brand_id, Note.created_at < cutoff, Note.body != EXPIRED)
        .values(body=EXPIRED)
        .execution_options(synchronize_session=False)
    )
    notices = 0
    for notice in db.session.scalars(
        select(Notification).where(
            Notification.brand_id == brand_id,
            Notification.kind == NotificationKind.MENTION,
            Notification.created_at < cutoff,
        )
    ):
        match = MENTION.match(notice.body)
        body = f"{match.group(1)}: {EXPIRED}" if match else EXPIRED
        if notice.body != body:
            notice.body = body
            notices += 1
    return notes, notices
