"""Settings: outgoing webhooks (admins). Each subscription's signing secret is shown once after
it is made; its latest deliveries show whether the receiver answers, and "Send test" queues a
signed `ping` to that one subscription through the ordinary delivery worker."""

from __future__ import annotations

from flask import g, render_template, request, url_for
from flask.typing import ResponseReturnValue

from helpdesk.accounts.models import Role
from helpdesk.outgoing import service as outgoing
from helpdesk.outgoing import subscriptions
from helpdesk.outgoing.models import EVENTS, WebhookSubscription
from helpdesk.queueing import wake_outgoing
from helpdesk.web.settings import bp, once, page
from helpdesk.web.settings.forms import attempt, submitted

ONCE = "webhook"
EVENT_LABELS = {
    "message.created": "A message is received or sent",
    "ticket.created": "A ticket is opened",
    "ticket.assigned": "A ticket is assigned",
    "ticket.resolved": "A ticket is resolved",
    "sla.breached": "An SLA target is missed",
}


def _render(errors: dict[str, str], form: dict, secret: str | None = None) -> str:
    rows = outgoing.list_subscriptions(g.brand, g.actor)
    chosen = form.get("events", [])
    return render_template(
        "settings/webhooks.html",
        subscriptions=rows,
        deliveries=subscriptions.recent_deliveries(rows),
        events=[(event, EVENT_LABELS.get(event, event)) for event in EVENTS],
        chosen=[chosen] if isinstance(chosen, str) else chosen,
        shown_url=subscriptions.shown_url,  # a password in a URL is not shown again
        errors=errors,
        form=form,
        secret=secret,
    )


def _owned(subscription_id: int) -> WebhookSubscription:
    """Another brand's subscription is a 404 (NotFound, re-raised by `attempt`)."""
    return outgoing.get_subscription(subscription_id, g.brand.id)


@bp.get("/settings/webhooks", endpoint="webhooks")
@page(Role.ADMIN)
def webhooks_page() -> ResponseReturnValue:
    return _render({}, {}, once.take(ONCE))


@bp.post("/settings/webhooks")
@page(Role.ADMIN)
def create_webhook() -> ResponseReturnValue:
    return attempt(
        lambda: subscriptions.create(
            g.brand, g.actor, request.form.get("url", ""), request.form.getlist("events")
        ),
        "Webhook added.",
        url_for("settings.webhooks"),
        lambda errors: _render(errors, submitted()),
        after=lambda made: once.keep(ONCE, made[1]),  # once committed, never in the URL
    )


@bp.post("/settings/webhooks/<int:subscription_id>/delete")
@page(Role.ADMIN)
def delete_webhook(subscription_id: int) -> ResponseReturnValue:
    return attempt(
        lambda: subscriptions.delete(_owned(subscription_id), g.actor),
        "Webhook removed: nothing more is sent to it.",
        url_for("settings.webhooks"),
        lambda errors: _render(errors, {}),
    )


@bp.post("/settings/webhooks/<int:subscription_id>/test")
@page(Role.ADMIN)
def test_webhook(subscription_id: int) -> ResponseReturnValue:
    return attempt(
        lambda: subscriptions.send_test(_owned(subscription_id), g.actor),
        "Test event queued: reload this page in a few seconds to see how the receiver answered.",
        url_for("settings.webhooks") + f"#webhook-{subscription_id}",
        lambda errors: _render(errors, {}),
        after=lambda _delivery: wake_outgoing(),
    )
