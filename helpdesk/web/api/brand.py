"""The brand's settings: read by a manager or an admin token; changed by an admin token, or by
a manager token for the satisfaction survey only. The rules live in brands.settings."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields

from helpdesk import transaction
from helpdesk.accounts.models import Role
from helpdesk.brands import settings
from helpdesk.brands.service import get_brand
from helpdesk.errors import InvalidField
from helpdesk.web.api.auth import actor, brand_id, requires
from helpdesk.web.api.blueprint import api_blueprint
from helpdesk.web.api.schemas import Text

bp = api_blueprint("brand", "The brand's settings")

# The API's names of the service's fields, as a refusal names them back to the caller.
API_NAMES = {
    "followers_are_known": "requests.known_followers",
    "accept_all_requests": "requests.accept_all",
    "hidden_words": "requests.hidden_words",
    "csat_enabled": "csat.enabled",
    "csat_question": "csat.question",
    "csat_delay_minutes": "csat.delay_minutes",
}


class RequestsSchema(Schema):
    known_followers = fields.Boolean(
        metadata={"description": "people who follow the brand skip Requests"}
    )
    accept_all = fields.Boolean(metadata={"description": "every new conversation skips Requests"})
    hidden_words = fields.List(
        Text(),
        metadata={"description": "requests containing one of these are hidden (any case)"},
    )


class CsatSchema(Schema):
    enabled = fields.Boolean()
    question = Text(metadata={"description": "1 to 300 characters"})
    delay_minutes = fields.Integer(strict=True, metadata={"description": "0 to 10080"})


class BrandSettingsSchema(Schema):
    name = Text(metadata={"description": "1 to 200 characters"})
    timezone = Text(metadata={"description": "an IANA name, e.g. Europe/Paris"})
    reopen_days = fields.Integer(strict=True, metadata={"description": "0 to 365"})
    requests = fields.Nested(RequestsSchema)
    csat = fields.Nested(CsatSchema)
    retention_days = fields.Integer(
        strict=True,
        allow_none=True,
        metadata={"description": "1 to 3650, or null to keep conversations forever"},
    )


def _changes(body: dict[str, Any]) -> dict[str, Any]:
    """The body in the service's field names."""
    changes: dict[str, Any] = {
        k: body[k] for k in ("name", "timezone", "reopen_days", "retention_days") if k in body
    }
    requests, csat = body.get("requests", {}), body.get("csat", {})
    for api_name, name in (
        ("known_followers", "followers_are_known"),
        ("accept_all", "accept_all_requests"),
        ("hidden_words", "hidden_words"),
    ):
        if api_name in requests:
            changes[name] = requests[api_name]
    for api_name in ("enabled", "question", "delay_minutes"):
        if api_name in csat:
            changes[f"csat_{api_name}"] = csat[api_name]
    return changes


@bp.route("/brand", methods=["GET"])
@requires(Role.MANAGER)
@bp.response(200, BrandSettingsSchema)
def get_settings() -> dict[str, Any]:
    """The settings of the token's brand."""
    return settings.to_dict(get_brand(brand_id()))


@bp.route("/brand", methods=["PATCH"])
@requires(Role.MANAGER)
@bp.arguments(BrandSettingsSchema)
@bp.response(200, BrandSettingsSchema)
def patch_settings(body: dict[str, Any]) -> dict[str, Any]:
    """Change the given fields, others stay; a manager token may send `csat` only (else 403).
    A refused value changes nothing and is named in `error.fields`."""
    brand = get_brand(brand_id())
    try:
        settings.update_brand(brand, actor(), _changes(body))
    except InvalidField as refused:
        refused.fields = {API_NAMES.get(k, k): v for k, v in refused.fields.items()}
        refused.message = "; ".join(
            f"{name}: {' '.join(messages)}" for name, messages in refused.fields.items()
        )
        raise
    transaction.commit()
    return settings.to_dict(brand)
