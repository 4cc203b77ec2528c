"""SLA policies and the brand's business hours: settings, changed with a manager or admin token."""

from __future__ import annotations

from typing import Any

from helpdesk import transaction
from helpdesk.accounts.models import Role
from helpdesk.brands.models import Brand
from helpdesk.brands.service import get_brand
from helpdesk.sla import service as sla
from helpdesk.sla.models import SlaPolicy
from helpdesk.web.api import present
from helpdesk.web.api.auth import actor, brand_id, requires
from helpdesk.web.api.blueprint import api_blueprint
from helpdesk.web.api.lookups import owned
from helpdesk.web.api.pagination import Order, paginate
from helpdesk.web.api.schemas import (
    BusinessHoursSchema,
    PageQuerySchema,
    SlaPolicyPatchSchema,
    SlaPolicySchema,
    page_of,
)

bp = api_blueprint("settings", "SLA policies and business hours")

POLICIES = Order("sla_policies", SlaPolicy.id, SlaPolicy.position, int, descending=False)


def _brand() -> Brand:
    return get_brand(brand_id())


@bp.route("/sla-policies", methods=["GET"])
@requires(Role.MANAGER)
@bp.arguments(PageQuerySchema, location="query")
@bp.response(200, page_of(SlaPolicySchema, "SlaPolicyPage"))
def list_policies(args: dict[str, Any]) -> dict[str, Any]:
    """Policies in matching order: the first that matches a ticket sets its targets."""
    rows, cursor = paginate(sla.policies_query(brand_id()), POLICIES, args)
    return {"items": present.sla_policies(rows), "next_cursor": cursor}


@bp.route("/sla-policies", methods=["POST"])
@requires(Role.MANAGER)
@bp.arguments(SlaPolicySchema)
@bp.response(201, SlaPolicySchema)
def create_policy(data: dict[str, Any]) -> dict[str, Any]:
    """A new policy; the brand's open tickets get new due times at once."""
    policy = sla.create_policy(_brand(), actor(), **data)
    transaction.commit()
    return present.sla_policy(policy)


@bp.route("/sla-policies/<id:policy_id>", methods=["GET"])
@requires(Role.MANAGER)
@bp.response(200, SlaPolicySchema)
def get_policy(policy_id: int) -> dict[str, Any]:
    """One policy."""
    return present.sla_policy(owned(SlaPolicy, policy_id))


@bp.route("/sla-policies/<id:policy_id>", methods=["PATCH"])
@requires(Role.MANAGER)
@bp.arguments(SlaPolicyPatchSchema)
@bp.response(200, SlaPolicySchema)
def patch_policy(changes: dict[str, Any], policy_id: int) -> dict[str, Any]:
    """Change the given fields (conditions and targets given are merged); tickets follow."""
    policy = sla.update_policy(owned(SlaPolicy, policy_id), actor(), **changes)
    transaction.commit()
    return present.sla_policy(policy)


@bp.route("/sla-policies/<id:policy_id>", methods=["DELETE"])
@requires(Role.MANAGER)
@bp.response(204)
def delete_policy(policy_id: int) -> None:
    """Delete a policy; open tickets fall through to the next one that matches."""
    sla.delete_policy(owned(SlaPolicy, policy_id), actor())
    transaction.commit()


@bp.route("/business-hours", methods=["GET"])
@bp.response(200, BusinessHoursSchema)
def get_business_hours() -> dict[str, Any]:
    """The brand's calendar (open around the clock in its time zone until one is set)."""
    return sla.get_calendar(_brand()).to_dict()


@bp.route("/business-hours", methods=["PUT"])
@requires(Role.MANAGER)
@bp.arguments(BusinessHoursSchema)
@bp.response(200, BusinessHoursSchema)
def put_business_hours(data: dict[str, Any]) -> dict[str, Any]:
    """Replace the calendar; every open ticket's due times move with it."""
    brand = _brand()
    sla.set_calendar(brand, actor(), data)
    transaction.commit()
    return sla.get_calendar(brand).to_dict()
