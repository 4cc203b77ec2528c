"""A brand's webhook subscriptions as its admins manage them, from the settings page and the API:
refusals named by field, the audit trail, the latest deliveries, and a test send.

The rules of targets, events and delivery stay in `helpdesk.outgoing.service`; this module asks
them first, so a refused URL is a message next to the URL field and not a page-wide one. A test
send is an ordinary delivery (signed, retried, logged), queued for one subscription alone.
"""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select

from helpdesk.accounts.actor import Actor
from helpdesk.accounts.models import Role
from helpdesk.accounts.service import require_role
from helpdesk.audit import service as audit
from helpdesk.brands.models import Brand
from helpdesk.errors import InvalidField, ValidationError
from helpdesk.extensions import db
from helpdesk.outgoing import service as outgoing
from helpdesk.outgoing.models import EVENTS, WebhookDelivery, WebhookSubscription
from helpdesk.types import utcnow

TEST_EVENT = "ping"
RECENT_DELIVERIES = 10


def _refusal(errors: dict[str, str]) -> InvalidField:
    """One refusal naming every field at fault, so the form shows all its messages at once."""
    field, message = next(iter(errors.items()))
    refused = InvalidField(field, message)
    refused.fields = {name: [text] for name, text in errors.items()}
    return refused


def _check(url: Any, events: Any) -> list[str]:
    errors: dict[str, str] = {}
    try:
        outgoing.check_url(url)
    except ValidationError as exc:
        errors["url"] = exc.message
    if isinstance(events, str) or not isinstance(events, list | tuple) or not events:
        errors["events"] = "Choose at least one event."
    elif unknown := [event for event in events if event not in EVENTS]:
        errors["events"] = f"Unknown events: {', '.join(map(str, unknown))}."
    if errors:
        raise _refusal(errors)
    return list(events)


def shown_url(url: str) -> str:
    """The URL without a password it may carry, for the audit log."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return url
    if not parsed.password:
        return url
    return str(parsed.copy_with(username=parsed.username, password="***"))


def create(
    brand: Brand, actor: Actor | None, url: Any, events: Any
) -> tuple[WebhookSubscription, str]:
    """The subscription and its signing secret, which the caller shows once."""
    require_role(actor, brand.id, Role.ADMIN)
    wanted = _check(url, events)
    subscription, secret = outgoing.create_subscription(brand, actor, url, wanted)
    audit.record(
        actor,
        brand.id,
        "webhook.created",
        "webhook",
        subscription.id,
        audit.created({"url": shown_url(subscription.url), "events": subscription.events}),
        label=shown_url(subscription.url),
    )
    return subscription, secret


def delete(subscription: WebhookSubscription, actor: Actor | None) -> None:
    """Its deliveries not yet sent go with it (the service's rule)."""
    require_role(actor, subscription.brand_id, Role.ADMIN)
    url = shown_url(subscription.url)
    audit.record(
        actor,
        subscription.brand_id,
        "webhook.deleted",
        "webhook",
        subscription.id,
        audit.removed({"url": url, "events": list(subscription.events)}),
        label=url,
    )
    outgoing.delete_subscription(subscription, actor)


def send_test(subscription: WebhookSubscription, actor: Actor | None) -> WebhookDelivery:
    """A `ping` delivery for this subscription alone, due now; the caller commits and then wakes
    the delivery worker. The receiver sees the same envelope, headers and signature as for a
    real event, so a test proves the whole path, secret included."""
    require_role(actor, subscription.brand_id, Role.ADMIN)
    now = utcnow()
    delivery = WebhookDelivery(
        brand_id=subscription.brand_id,
        subscription_id=subscription.id,
        event=TEST_EVENT,
        payload={"test": True, "subscription_id": subscription.id, "sent_at": now.isoformat()},
        next_attempt_at=now,
        created_at=now,
    )
    db.session.add(delivery)
    db.session.flush()
    audit.record(
        actor,
        subscription.brand_id,
        "webhook.test_sent",
        "webhook",
        subscription.id,
        {"event": [None, TEST_EVENT], "delivery_id": [None, delivery.id]},
        label=shown_url(subscription.url),
    )
    return delivery


def recent_deliveries(
    subscriptions: list[WebhookSubscription], per: int = RECENT_DELIVERIES
) -> dict[int, list[WebhookDelivery]]:
    """The latest deliveries of each subscription, newest first: a query per subscription, since
    a brand has a handful of them."""
    return {
        subscription.id: list(
            db.session.scalars(
                select(WebhookDelivery)
                .where(WebhookDelivery.subscription_id == subscription.id)
                .order_by(WebhookDelivery.id.desc())
                .limit(per)
            )
        )
        for subscription in subscriptions
    }
