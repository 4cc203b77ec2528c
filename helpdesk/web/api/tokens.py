"""API tokens of the brand: list, create (the secret is in that answer alone), revoke.

Admin tokens only, as on the settings page. A token may revoke itself (204, and it is refused
from the next request on): an integration retires its old token once it holds the new one.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from helpdesk import transaction
from helpdesk.accounts import api_tokens
from helpdesk.accounts.models import Role
from helpdesk.accounts.tokens import MAX_NAME_LENGTH, ApiToken
from helpdesk.brands.service import get_brand
from helpdesk.web.api.auth import actor, brand_id, requires
from helpdesk.web.api.blueprint import api_blueprint
from helpdesk.web.api.lookups import owned
from helpdesk.web.api.pagination import Order, paginate
from helpdesk.web.api.schemas import OneOf, PageQuerySchema, Text, page_of

bp = api_blueprint("tokens", "API tokens")

TOKENS = Order("api_tokens", ApiToken.id)  # newest first
ROLE_NAMES = [role.value for role in api_tokens.ROLES]


class TokenInSchema(Schema):
    name = Text(required=True, validate=validate.Length(1, MAX_NAME_LENGTH))
    role = OneOf(ROLE_NAMES, required=True)


class TokenSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    role = fields.String(validate=validate.OneOf(ROLE_NAMES))
    hint = fields.String(metadata={"description": "the token's last four characters"})
    created_at = fields.DateTime()
    last_used_at = fields.DateTime(allow_none=True, metadata={"description": "to the minute"})
    revoked_at = fields.DateTime(allow_none=True)


class TokenCreatedSchema(TokenSchema):
    token = fields.String(
        metadata={"description": "the Bearer token: shown this once, only its hash is kept"}
    )


@bp.route("/tokens", methods=["GET"])
@requires(Role.ADMIN)
@bp.arguments(PageQuerySchema, location="query")
@bp.response(200, page_of(TokenSchema, "TokenPage"))
def list_tokens(args: dict[str, Any]) -> dict[str, Any]:
    """The brand's tokens, newest first, revoked ones included (with `revoked_at`)."""
    rows, cursor = paginate(api_tokens.tokens_query(brand_id(), actor()), TOKENS, args)
    return {"items": [api_tokens.to_dict(row) for row in rows], "next_cursor": cursor}


@bp.route("/tokens", methods=["POST"])
@requires(Role.ADMIN)
@bp.arguments(TokenInSchema)
@bp.response(201, TokenCreatedSchema)
def create_token(data: dict[str, Any]) -> dict[str, Any]:
    """A token of the brand with the given role; the secret is answered this once."""
    row, secret = api_tokens.issue(get_brand(brand_id()), actor(), data["name"], data["role"])
    transaction.commit()
    return {**api_tokens.to_dict(row), "token": secret}


@bp.route("/tokens/<id:token_id>", methods=["DELETE"])
@requires(Role.ADMIN)
@bp.response(204)
def revoke_token(token_id: int) -> None:
    """Revoke: the token is refused (401) from the next request on; revoking again is a 204."""
    api_tokens.revoke(brand_id(), actor(), owned(ApiToken, token_id).id)
    transaction.commit()
