"""Outgoing webhook subscriptions: where the brand's own systems hear about messages and tickets.

Admin tokens only, as in the service: the URLs may name the brand's internal systems.
"""

from __future__ import annotations

from typing import Any

from helpdesk import transaction
from helpdesk.accounts.models import Role
from helpdesk.brands.service import get_brand
from helpdesk.outgoing import service as outgoing
from helpdesk.outgoing import subscriptions
from helpdesk.outgoing.models import WebhookSubscription
from helpdesk.web.api.auth import actor, brand_id, requires
from helpdesk.web.api.blueprint import api_blueprint
from helpdesk.web.api.inputs import SubscriptionInSchema
from helpdesk.web.api.lookups import owned
from helpdesk.web.api.pagination import Order, paginate
from helpdesk.web.api.schemas import (
    PageQuerySchema,
    SubscriptionCreatedSchema,
    SubscriptionSchema,
    page_of,
)

bp = api_blueprint("webhook_subscriptions", "Outgoing webhooks to the brand's own systems")

SUBSCRIPTIONS = Order("webhook_subscriptions", WebhookSubscription.id, descending=False)


def shown(subscription: WebhookSubscription) -> dict[str, Any]:
    return {**outgoing.to_dict(subscription), "created_at": subscription.created_at}


@bp.route("/webhook-subscriptions", methods=["GET"])
@requires(Role.ADMIN)
@bp.arguments(PageQuerySchema, location="query")
@bp.response(200, page_of(SubscriptionSchema, "SubscriptionPage"))
def list_subscriptions(args: dict[str, Any]) -> dict[str, Any]:
    """The brand's subscriptions, oldest first."""
    query = outgoing.subscriptions_query(get_brand(brand_id()), actor())
    rows, cursor = paginate(query, SUBSCRIPTIONS, args)
    return {"items": [shown(row) for row in rows], "next_cursor": cursor}


@bp.route("/webhook-subscriptions", methods=["POST"])
@requires(Role.ADMIN)
@bp.arguments(SubscriptionInSchema)
@bp.response(201, SubscriptionCreatedSchema)
def create_subscription(data: dict[str, Any]) -> dict[str, Any]:
    """Subscribe a URL to events; the signing secret is answered this once."""
    subscription, secret = subscriptions.create(
        get_brand(brand_id()), actor(), data["url"], data["events"]
    )
    transaction.commit()
    return {**shown(subscription), "secret": secret}


@bp.route("/webhook-subscriptions/<id:subscription_id>", methods=["DELETE"])
@requires(Role.ADMIN)
@bp.response(204)
def delete_subscription(subscription_id: int) -> None:
    """Unsubscribe; deliveries not yet sent go with it."""
    subscriptions.delete(owned(WebhookSubscription, subscription_id), actor())
    transaction.commit()
