"""Copies of inbound media: the platform's URLs expire within days, so each image, video, voice
note, file, sticker and story of a message is downloaded into the app's own store soon after it
arrives, and the console shows the copy.

A row per attachment (unique per message and attachment index) is made in the transaction that
stores the message; after its commit a worker is asked to copy it (`copy`), and a periodic sweep
finds any the broker lost. A copy is claimed by a short lease, downloaded outside any
transaction, and recorded only if the row is still the claimant's and still pending: a copy that
finishes after the person was erased deletes its own bytes.

A failure that asking again cannot change (the link expired, too big, wrong type, a private
address) ends the row as FAILED with the reason an agent reads; one that may pass (a timeout, a
server error) is retried with a growing pause while the URL lives, at most MAX_ATTEMPTS times.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from flask import current_app
from sqlalchemy import event, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from helpdesk.database import rows_matched
from helpdesk.dm.models import Message
from helpdesk.extensions import db
from helpdesk.media import fetch
from helpdesk.media.models import MediaObject, MediaOrigin, MediaStatus
from helpdesk.media.store import MediaMissing, media_store
from helpdesk.media.thumbnails import CONTENT_TYPE as THUMBNAIL_TYPE
from helpdesk.media.thumbnails import thumbnail
from helpdesk.queueing import enqueue_media_copy
from helpdesk.types import utcnow

log = logging.getLogger(__name__)

COPIED_KINDS = frozenset(fetch.EXPECTED)
MAX_ATTEMPTS = 5
# After the 1st, 2nd, ... failed try: about seven hours in all, well within a CDN link's life.
BACKOFF = (timedelta(minutes=1), timedelta(minutes=10), timedelta(hours=1), timedelta(hours=6))
LEASE = timedelta(minutes=3)  # longer than a download may take (fetch.DEADLINE_SECONDS and more)
QUEUE_KEY = "media_copies_to_send"
MAX_URL = 4096


# Which attachments are copied ---------------------------------------------------------------------


def copyable(attachment: Any) -> bool:
    """An attachment of a kind whose bytes are worth keeping, with a URL to take them from."""
    return (
        isinstance(attachment, dict)
        and attachment.get("type") in COPIED_KINDS
        and isinstance(attachment.get("url"), str)
        and attachment["url"].lower().startswith(("https://", "http://"))
        and len(attachment["url"]) <= MAX_URL
    )


def note_inbound(message: Message) -> list[int]:
    """A pending copy for each copyable attachment of a message just stored; asked of a worker
    after the commit. Noting the same message again adds nothing."""
    rows = [
        {
            "brand_id": message.brand_id,
            "origin": MediaOrigin.INBOUND,
            "message_id": message.id,
            "attachment_index": index,
            "kind": attachment["type"],
            "status": MediaStatus.PENDING,
            "source_url": attachment["url"],
            "filename": _filename(attachment),
            "attempts": 0,
            "next_attempt_at": utcnow(),
            "created_at": utcnow(),
        }
        for index, attachment in enumerate(message.attachments or [])
        if copyable(attachment)
    ]
    if not rows:
        return []
    dialect = db.session.get_bind().dialect.name
    dialect_insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    ids = list(
        db.session.scalars(
            dialect_insert(MediaObject)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["message_id", "attachment_index"])
            .returning(MediaObject.id)
        )
    )
    db.session.info.setdefault(QUEUE_KEY, []).extend(ids)
    return ids


def _filename(attachment: dict) -> str | None:
    name = attachment.get("name") or attachment.get("title")
    return str(name)[:255] if isinstance(name, str) and name.strip() else None


@event.listens_for(db.session, "after_commit")
def _send_after_commit(session: Session) -> None:
    if session.get_nested_transaction() is not None:
        return
    for media_id in session.info.pop(QUEUE_KEY, []):
        enqueue_media_copy(media_id)


@event.listens_for(db.session, "after_soft_rollback")
def _forget(session: Session, previous: Any) -> None:
    if not previous.nested:
        session.info.pop(QUEUE_KEY, None)


# Copying ------------------------------------------------------------------------------------------


def due_ids(now: datetime | None = None, limit: int = 100) -> list[int]:
    """Pending copies whose time has come (new, to retry, or a lease that lapsed)."""
    now = now or utcnow()
    return list(
        db.session.scalars(
            select(MediaObject.id)
            .where(MediaObject.status == MediaStatus.PENDING, _due(now))
            .order_by(MediaObject.next_attempt_at, MediaObject.id)
            .limit(limit)
        )
    )


def _due(now: datetime) -> ColumnElement[bool]:
    return or_(MediaObject.next_attempt_at.is_(None), MediaObject.next_attempt_at <= now)


def copy(media_id: int, now: datetime | None = None) -> MediaStatus | None:
    """Try to copy one medium; its status afterwards, or None when it was not this call's to
    copy (done, failed, purged, not due, or being copied elsewhere). Commits."""
    now = now or utcnow()
    media = _claim(media_id, now)
    if media is None:
        return None
    attempt = media.attempts
    try:
        expires = link_expires_at(media.source_url or "")
        if expires is not None and expires <= now:
            raise fetch.Refused("The link expired before it could be copied.")
        fetched = fetch.fetch(
            media.source_url or "",
            media.kind,
            max_bytes=current_app.config["MEDIA_MAX_BYTES"],
            allow_private=current_app.config["MEDIA_FETCH_ALLOW_PRIVATE"],
        )
    except fetch.Refused as refused:
        return _give_up(media_id, attempt, str(refused))
    except fetch.Unavailable as unavailable:
        return _retry_later(media_id, attempt, str(unavailable), now, expires)
    return _keep(media, attempt, fetched)


def _claim(media_id: int, now: datetime) -> MediaObject | None:
    claimed = rows_matched(
        update(MediaObject)
        .where(
            MediaObject.id == media_id,
            MediaObject.status == MediaStatus.PENDING,
            _due(now),
        )
        .values(attempts=MediaObject.attempts + 1, next_attempt_at=now + LEASE)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return db.session.get(MediaObject, media_id) if claimed else None


def _still_mine(media_id: int, attempt: int) -> tuple[ColumnElement[bool], ...]:
    return (
        MediaObject.id == media_id,
        MediaObject.status == MediaStatus.PENDING,
        MediaObject.attempts == attempt,
    )


def _keep(media: MediaObject, attempt: int, fetched: fetch.Fetched) -> MediaStatus | None:
    store = media_store()
    key = f"{media.brand_id}/{secrets.token_hex(16)}"
    store.put(key, fetched.data, fetched.content_type)
    small = thumbnail(fetched.data) if fetched.content_type in fetch.IMAGES else None
    thumbnail_key = f"{key}-thumb" if small else None
    if small and thumbnail_key:
        store.put(thumbnail_key, small, THUMBNAIL_TYPE)
    media_id = media.id
    recorded = rows_matched(
        update(MediaObject)
        .where(*_still_mine(media_id, attempt))
        .values(
            status=MediaStatus.STORED,
            storage_key=key,
            thumbnail_key=thumbnail_key,
            content_type=fetched.content_type,
            size=len(fetched.data),
            sha256=hashlib.sha256(fetched.data).hexdigest(),
            reason=None,
            next_attempt_at=None,
            stored_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    if not recorded:  # erased or purged meanwhile, or another worker's now: keep nothing
        _delete_keys([key, thumbnail_key])
        return None
    return MediaStatus.STORED


def _give_up(media_id: int, attempt: int, reason: str) -> MediaStatus | None:
    failed = rows_matched(
        update(MediaObject)
        .where(*_still_mine(media_id, attempt))
        .values(status=MediaStatus.FAILED, reason=reason[:500], next_attempt_at=None)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    if failed:
        log.info("media %s not copied: %s", media_id, reason)
    return MediaStatus.FAILED if failed else None


def _retry_later(
    media_id: int, attempt: int, reason: str, now: datetime, expires: datetime | None
) -> MediaStatus | None:
    if attempt >= MAX_ATTEMPTS:
        return _give_up(media_id, attempt, f"Not copied after {attempt} tries: {reason}")
    at = now + BACKOFF[min(attempt, len(BACKOFF)) - 1]
    if expires is not None and at >= expires:
        return _give_up(
            media_id, attempt, f"The link expired before a retry could copy it ({reason})"
        )
    retried = rows_matched(
        update(MediaObject)
        .where(*_still_mine(media_id, attempt))
        .values(reason=reason[:500], next_attempt_at=at)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return MediaStatus.PENDING if retried else None


def link_expires_at(url: str) -> datetime | None:
    """When a Meta CDN link stops working: its `oe` parameter, a Unix time in hex."""
    value = parse_qs(urlsplit(url).query).get("oe", [""])[0]
    try:
        return datetime.fromtimestamp(int(value, 16), UTC) if value else None
    except (ValueError, OverflowError, OSError):
        return None


# Reading ------------------------------------------------------------------------------------------


def of_messages(message_ids: Iterable[int]) -> dict[int, dict[int, MediaObject]]:
    """The media rows of a page of messages, by message id and attachment index: one query."""
    found: dict[int, dict[int, MediaObject]] = {}
    ids = list(message_ids)
    if not ids:
        return found
    for media in db.session.scalars(select(MediaObject).where(MediaObject.message_id.in_(ids))):
        if media.message_id is not None and media.attachment_index is not None:
            found.setdefault(media.message_id, {})[media.attachment_index] = media
    return found


def latest_thumbnails(conversation_ids: Iterable[int]) -> dict[int, int]:
    """For an inbox page: the stored copy with a thumbnail of each conversation's latest
    message, when that message is a picture (not vanish-mode, not unsent): one query."""
    ids = list(conversation_ids)
    if not ids:
        return {}
    latest = (
        select(Message.conversation_id, func.max(Message.id).label("message_id"))
        .where(Message.conversation_id.in_(ids), Message.suppressed.is_(False))
        .group_by(Message.conversation_id)
        .subquery()
    )
    rows = db.session.execute(
        select(latest.c.conversation_id, func.min(MediaObject.id))
        .join(Message, Message.id == latest.c.message_id)
        .join(MediaObject, MediaObject.message_id == latest.c.message_id)
        .where(
            MediaObject.status == MediaStatus.STORED,
            MediaObject.thumbnail_key.is_not(None),
            Message.vanish.is_(False),
            Message.unsent_at.is_(None),
        )
        .group_by(latest.c.conversation_id)
    )
    return {conversation_id: media_id for conversation_id, media_id in rows}


def read(media: MediaObject, thumbnail_wanted: bool = False) -> bytes:
    """The stored bytes (or the thumbnail's); raises MediaMissing when there are none."""
    key = media.thumbnail_key if thumbnail_wanted else media.storage_key
    if media.status is not MediaStatus.STORED or not key:
        raise MediaMissing(str(media.id))
    return media_store().get(key)


# Purging ------------------------------------------------------------------------------------------


def purge_messages(message_ids: Iterable[int]) -> int:
    """Delete the stored copies of these messages' media and forget where they came from (erase,
    retention, vanish mode); the rows stay, PURGED, so a late copy finds nothing to record."""
    ids = list(message_ids)
    if not ids:
        return 0
    return _purge(select(MediaObject).where(MediaObject.message_id.in_(ids)))


def purge_unattached(brand_id: int, before: datetime) -> int:
    """Copies and uploads of the brand made before `before` that no message carries (retention)."""
    return _purge(
        select(MediaObject).where(
            MediaObject.brand_id == brand_id,
            MediaObject.message_id.is_(None),
            MediaObject.created_at < before,
        )
    )


def _purge(query: Any) -> int:
    """Bytes go first, inside the caller's transaction: a rollback then leaves a row that says
    stored with nothing behind it (served as missing), never bytes that should be gone."""
    count = 0
    for media in db.session.scalars(query.where(MediaObject.status != MediaStatus.PURGED)):
        _delete_keys([media.storage_key, media.thumbnail_key])
        media.status = MediaStatus.PURGED
        media.source_url = media.filename = media.reason = None
        media.storage_key = media.thumbnail_key = media.sha256 = None
        media.next_attempt_at = None
        count += 1
    db.session.flush()
    return count


def _delete_keys(keys: Iterable[str | None]) -> None:
    store = media_store()
    for key in keys:
        if key:
            store.delete(key)
