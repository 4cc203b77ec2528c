"""A brand's API tokens as its admins manage them, from the settings page and the API alike.

`helpdesk.accounts.tokens` makes, checks and revokes tokens; this module adds who may (admins
of the brand) and the audit trail, which lives here rather than there because the audit service
builds on the Actor, and the Actor on the token model. The secret itself is never audited.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select

from helpdesk.accounts.actor import Actor
from helpdesk.accounts.models import Role
from helpdesk.accounts.service import require_role
from helpdesk.accounts.tokens import ApiToken, create_token, revoke_token
from helpdesk.audit import service as audit
from helpdesk.brands.models import Brand
from helpdesk.errors import NotFound
from helpdesk.extensions import db

ROLES = (Role.AGENT, Role.MANAGER, Role.ADMIN)


def tokens_query(brand_id: int, actor: Actor | None) -> Select:
    """The brand's tokens, revoked ones included (they explain past calls in the audit log)."""
    require_role(actor, brand_id, Role.ADMIN)
    return select(ApiToken).where(ApiToken.brand_id == brand_id)


def list_tokens(brand_id: int, actor: Actor | None) -> list[ApiToken]:
    """Newest first: the token just made is the one being looked for."""
    return list(db.session.scalars(tokens_query(brand_id, actor).order_by(ApiToken.id.desc())))


def get_token(brand_id: int, token_id: int) -> ApiToken:
    """Another brand's token does not exist for the caller."""
    row = db.session.get(ApiToken, token_id)
    if row is None or row.brand_id != brand_id:
        raise NotFound("no such API token")
    return row


def issue(brand: Brand, actor: Actor | None, name: str, role: Role | str) -> tuple[ApiToken, str]:
    """The row and the secret, which the caller shows once: only its hash is kept."""
    require_role(actor, brand.id, Role.ADMIN)
    row, secret = create_token(brand, name, role)
    audit.record(
        actor,
        brand.id,
        "api_token.created",
        "api_token",
        row.id,
        audit.created({"name": row.name, "role": row.role}),
        label=row.name,
    )
    return row, secret


def revoke(brand_id: int, actor: Actor | None, token_id: int) -> ApiToken:
    """Revoking twice is not an error, and the first revocation's time and audit row stand.
    A token may revoke itself: an integration retiring its old token after a rotation."""
    require_role(actor, brand_id, Role.ADMIN)
    row = get_token(brand_id, token_id)
    if row.revoked_at is not None:
        return row
    revoke_token(brand_id, token_id)
    audit.record(
        actor,
        brand_id,
        "api_token.revoked",
        "api_token",
        row.id,
        {"revoked_at": [None, row.revoked_at]},
        label=row.name,
    )
    return row


def to_dict(row: ApiToken) -> dict[str, Any]:
    """The API's shape: the hash is never part of it, the last four characters help tell
    tokens apart."""
    return {
        "id": row.id,
        "name": row.name,
        "role": Role(row.role).value,
        "hint": row.hint,
        "created_at": row.created_at,
        "last_used_at": row.last_used_at,
        "revoked_at": row.revoked_at,
    }
