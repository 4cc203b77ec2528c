"""API tokens: shown once, stored as a hash, each acting for one brand with a role."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import ForeignKey, String, or_, select, update
from sqlalchemy.orm import Mapped, mapped_column

from helpdesk.accounts.models import Role
from helpdesk.brands.models import Brand
from helpdesk.errors import InvalidField, NotFound
from helpdesk.extensions import Model, db
from helpdesk.types import UTCDateTime, utcnow, value_enum

TOKEN_PREFIX = "hd_"
MAX_NAME_LENGTH = 120
LAST_USED_EVERY = timedelta(minutes=1)


class ApiToken(Model):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    brand_id: Mapped[int] = mapped_column(ForeignKey("brands.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(MAX_NAME_LENGTH))
    role: Mapped[Role] = mapped_column(value_enum(Role), default=Role.ADMIN)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hint: Mapped[str] = mapped_column(String(12))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


def digest(token: str) -> str:
    # Tokens are 256 random bits: a fast hash is enough, and lookups stay one indexed query.
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(brand: Brand, name: str, role: Role | str = Role.ADMIN) -> tuple[ApiToken, str]:
    """Returns the row and the token itself, which is never stored and cannot be shown again."""
    try:
        role = Role(role)
    except ValueError as exc:
        raise InvalidField("role", "Choose agent, manager or admin.") from exc
    if not isinstance(name, str) or not name.strip():
        raise InvalidField("name", "A token needs a name.")
    if len(name.strip()) > MAX_NAME_LENGTH:
        raise InvalidField("name", f"A token name has at most {MAX_NAME_LENGTH} characters.")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        brand_id=brand.id, name=name.strip(), role=role, token_hash=digest(token), hint=token[-4:]
    )
    db.session.add(row)
    db.session.flush()
    return row, token


def authenticate(token: str) -> ApiToken | None:
    if not token or not token.startswith(TOKEN_PREFIX):
        return None
    row = db.session.scalar(select(ApiToken).where(ApiToken.token_hash == digest(token)))
    if row is None or row.revoked_at is not None:
        return None
    return row


def touch(token: ApiToken, now: datetime | None = None) -> bool:
    """Record use at most once a minute, so a busy integration does not write on every call;
    True when a write was made (the caller commits it)."""
    now = now or utcnow()
    if token.last_used_at is not None and now - token.last_used_at < LAST_USED_EVERY:
        return False
    db.session.execute(
        update(ApiToken)
        .where(
            ApiToken.id == token.id,
            or_(ApiToken.last_used_at.is_(None), ApiToken.last_used_at < now - LAST_USED_EVERY),
        )
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )
    return True


def revoke_token(brand_id: int, token_id: int) -> ApiToken:
    row = db.session.get(ApiToken, token_id)
    if row is None or row.brand_id != brand_id:
        raise NotFound("no such token")
    row.revoked_at = row.revoked_at or utcnow()
    db.session.flush()
    return row
