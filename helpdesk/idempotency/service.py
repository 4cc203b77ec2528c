"""Claim a key before writing, keep the answer with the write, replay it for every repeat.

The claim is inserted in the same transaction as the write it guards, and the answer is recorded
before that transaction commits: a key is never committed without its answer, and a write is
never committed without its key. A concurrent repeat blocks on the unique constraint until the
first commits (then replays its answer) or rolls back (then writes itself).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError

from helpdesk.errors import DomainError, ValidationError
from helpdesk.extensions import db
from helpdesk.idempotency.models import IdempotencyKey
from helpdesk.types import utcnow

KEY_LIFETIME = timedelta(hours=24)
MAX_KEY_LENGTH = 255
# How long a repeat waits for a first request whose answer is not visible yet (SQLite reports a
# busy writer instead of queueing on the constraint as PostgreSQL does).
WAIT_FOR_FIRST = 10.0


class IdempotencyKeyReused(DomainError):
    """This Idempotency-Key was already used for a different request."""

    code = "idempotency_key_reused"
    status = 422


class IdempotencyKeyInProgress(DomainError):
    """A request with this Idempotency-Key is still being processed: retry in a moment."""

    code = "idempotency_key_in_progress"
    status = 409


@dataclass(frozen=True)
class Answer:
    status: int
    body: str


def checked_key(raw: str) -> str:
    """1 to 255 printable ASCII characters, as the header's contract says."""
    if not 1 <= len(raw) <= MAX_KEY_LENGTH or not all(" " <= c <= "~" for c in raw):
        raise ValidationError("Idempotency-Key: 1 to 255 printable characters")
    return raw


def fingerprint(*parts: Any) -> str:
    """The same request, however its JSON was spaced or ordered, gives the same digest."""
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class Claim:
    """A key this request holds: `record` gives it the answer before the caller commits."""

    def __init__(self, row: IdempotencyKey | None):
        self.row = row

    def record(self, status: int, body: str) -> None:
        if self.row is not None:
            self.row.status, self.row.body = status, body
            db.session.flush()


def claim(
    brand_id: int, scope: str, key: str | None, digest: str, now: datetime | None = None
) -> Answer | Claim:
    """An Answer to replay when the key was used before; else a Claim for this request.

    Raises IdempotencyKeyReused when the key came with another request, and
    IdempotencyKeyInProgress when the first request still has not answered after a wait.
    Without a key there is nothing to claim.
    """
    if key is None:
        return Claim(None)
    now = now or utcnow()
    deadline = time.monotonic() + WAIT_FOR_FIRST
    while True:
        existing = db.session.scalar(
            select(IdempotencyKey).where(IdempotencyKey.scope == scope, IdempotencyKey.key == key)
        )
        if existing is not None and existing.created_at <= now - KEY_LIFETIME:
            db.session.delete(existing)
            db.session.flush()
            existing = None
        if existing is not None:
            if existing.fingerprint != digest:
                raise IdempotencyKeyReused()
            if existing.status is not None and existing.body is not None:
                return Answer(existing.status, existing.body)
        else:
            row = IdempotencyKey(
                brand_id=brand_id, scope=scope, key=key, fingerprint=digest, created_at=now
            )
            try:
                with db.session.begin_nested():
                    db.session.add(row)
                return Claim(row)
            except (IntegrityError, OperationalError):
                pass  # another request holds the key: read its answer once it is committed
        if time.monotonic() > deadline:
            raise IdempotencyKeyInProgress()
        db.session.rollback()
        time.sleep(0.05)
