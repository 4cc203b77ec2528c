"""Outgoing webhooks (docs/webhook.md): a brand's subscriptions, the events they receive, and
the signed, retried delivery of each event to the brand's own systems.

Delivery is at least once. A delivery is claimed (status ``sending`` with ``next_attempt_at`` set
to the end of a short lease) and committed before the HTTP call, and its outcome is recorded in a
second transaction; a worker that dies in between leaves the claim to expire, and the delivery is
sent again. Receivers de-duplicate with the ``X-Helpdesk-Delivery`` header (the delivery id),
which stays the same across every attempt.

Targets are refused when they point inside the network (loopback, private, link-local,
unique-local, ``localhost``), checked on every resolved address when the subscription is made
and again at each attempt, and the request goes to an address that was checked, so a DNS answer
that changes between the check and the call cannot redirect it. ``OUTGOING_WEBHOOKS_ALLOW_PRIVATE``
lifts the address rules for deployments whose receivers live on the same network.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from flask import current_app
from sqlalchemy import Select, delete, select, update

from helpdesk.accounts.actor import Actor
from helpdesk.accounts.models import Agent, Role
from helpdesk.accounts.service import require_role
from helpdesk.brands.models import Brand
from helpdesk.crypto import decrypt, encrypt
from helpdesk.database import rows_matched
from helpdesk.dm.models import Message
from helpdesk.errors import NotFound, ValidationError
from helpdesk.extensions import db
from helpdesk.memo import cached
from helpdesk.outgoing.models import EVENTS, WebhookDelivery, WebhookSubscription
from helpdesk.tickets.models import Ticket
from helpdesk.types import utcnow

log = logging.getLogger(__name__)

PENDING = "pending"
SENDING = "sending"
DELIVERED = "delivered"
FAILED = "failed"
CLAIMABLE = (PENDING, SENDING)  # a "sending" row whose lease ran out is claimable again
OUTCOMES = {DELIVERED: "delivered", PENDING: "failed, will retry", FAILED: "failed, given up"}

SCHEMES = ("http", "https")
MAX_URL_LENGTH = 2048
TIMEOUT_SECONDS = 10.0
MAX_ATTEMPTS = 8
BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_CAP = timedelta(hours=1)
# Longer than one attempt can take (a connect and a read of 10 s per checked address), so a live
# sender never sees its delivery claimed by another worker.
LEASE = timedelta(minutes=2)
MAX_ERROR_LENGTH = 500
SIGNATURE_HEADER = "X-Helpdesk-Signature"
EVENT_HEADER = "X-Helpdesk-Event"
DELIVERY_HEADER = "X-Helpdesk-Delivery"
USER_AGENT = "dm-helpdesk-webhooks/1"
NAT64 = ipaddress.ip_network("64:ff9b::/96")
LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215: a network's own translator
SIIT = ipaddress.ip_network("::ffff:0:0:0/96")  # IPv4-translated addresses (RFC 6052 / SIIT)
COMPATIBLE = ipaddress.ip_network("::/96")  # IPv4-compatible (deprecated), :: and ::1 included

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


# Targets ----------------------------------------------------------------------------------------


def _allow_private() -> bool:
    return bool(current_app.config.get("OUTGOING_WEBHOOKS_ALLOW_PRIVATE", False))


def is_internal(address: Address) -> bool:
    """True for every address that reaches the host or its network rather than the internet,
    including IPv4 addresses wrapped in IPv6 (mapped, translated, compatible, NAT64, 6to4),
    which reach the same places; Python before 3.12.4 calls some of these wrappings global."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        elif any(address in network for network in (NAT64, SIIT, COMPATIBLE)):
            if int(address) <= 1:  # :: and ::1
                return True
            address = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        elif address.sixtofour is not None:
            address = address.sixtofour
        elif address in LOCAL_NAT64 or address.teredo is not None or address.is_site_local:
            return True
    return not address.is_global or address.is_multicast


def _parse(url: Any) -> httpx.URL:
    if not isinstance(url, str) or not url.strip():
        raise ValidationError("A webhook needs a URL.")
    if len(url) > MAX_URL_LENGTH:
        raise ValidationError(f"A webhook URL has at most {MAX_URL_LENGTH} characters.")
    try:
        parsed = httpx.URL(url.strip())
    except httpx.InvalidURL as exc:
        raise ValidationError("The webhook URL is not a valid URL.") from exc
    if parsed.scheme not in SCHEMES:
        raise ValidationError("A webhook URL must start with http:// or https://.")
    if not parsed.host:
        raise ValidationError("A webhook URL needs a host.")
    return parsed


def _resolve(parsed: httpx.URL) -> list[str]:
    """Every address the host resolves to, in the resolver's order, without duplicates."""
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parsed.raw_host.decode("ascii"), port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise ValidationError(f"The webhook host {parsed.host!r} cannot be resolved.") from exc
    # An IPv6 link-local answer may carry a zone ("fe80::1%eth0"); the address is what counts.
    return list(dict.fromkeys(str(info[4][0]).split("%")[0] for info in infos))


def check_url(url: Any) -> tuple[httpx.URL, list[str]]:
    """The parsed URL and the addresses it may be sent to; raises ValidationError otherwise."""
    parsed = _parse(url)
    host = parsed.host.rstrip(".").lower()
    allow_private = _allow_private()
    if not allow_private and (host == "localhost" or host.endswith(".localhost")):
        raise ValidationError("A webhook URL may not point at this server (localhost).")
    addresses = _resolve(parsed)
    if not addresses:
        raise ValidationError(f"The webhook host {parsed.host!r} cannot be resolved.")
    if not allow_private:
        for address in addresses:
            if is_internal(ipaddress.ip_address(address)):
                raise ValidationError(
                    f"The webhook host {parsed.host!r} resolves to {address}, an address inside "
                    "the network (loopback, private or link-local), which is refused."
                )
    return parsed, addresses


# Subscriptions ----------------------------------------------------------------------------------


def _events(events: Any) -> list[str]:
    if isinstance(events, str) or not isinstance(events, list | tuple) or not events:
        raise ValidationError(f"events must be a non-empty list taken from {list(EVENTS)}.")
    unknown = [event for event in events if event not in EVENTS]
    if unknown:
        raise ValidationError(f"Unknown events {unknown!r}; choose from {list(EVENTS)}.")
    return list(dict.fromkeys(events))


def create_subscription(
    brand: Brand, actor: Actor | Agent | None, url: str, events: list[str]
) -> tuple[WebhookSubscription, str]:
    """The signing secret is returned only here: it is stored encrypted and never shown again."""
    require_role(actor, brand.id, Role.ADMIN)
    parsed, _addresses = check_url(url)
    wanted = _events(events)
    secret = "whsec_" + secrets.token_urlsafe(32)
    subscription = WebhookSubscription(
        brand_id=brand.id,
        url=str(parsed),
        events=wanted,
        secret_encrypted=encrypt(secret),
        active=True,
    )
    db.session.add(subscription)
    db.session.flush()
    return subscription, secret


def subscriptions_query(brand: Brand, actor: Actor | Agent | None) -> Select:
    """The brand's subscriptions, for a listing to order and page; admins only, as below."""
    require_role(actor, brand.id, Role.ADMIN)
    return select(WebhookSubscription).where(WebhookSubscription.brand_id == brand.id)


def list_subscriptions(brand: Brand, actor: Actor | Agent | None) -> list[WebhookSubscription]:
    """Admins only, like creating them: the URLs may name the brand's internal systems."""
    require_role(actor, brand.id, Role.ADMIN)
    return list(
        db.session.scalars(
            select(WebhookSubscription)
            .where(WebhookSubscription.brand_id == brand.id)
            .order_by(WebhookSubscription.id)
        )
    )


def get_subscription(subscription_id: int, brand_id: int) -> WebhookSubscription:
    """Another brand's subscription does not exist for the caller."""
    subscription = db.session.get(WebhookSubscription, subscription_id)
    if subscription is None or subscription.brand_id != brand_id:
        raise NotFound("no such webhook subscription")
    return subscription


def delete_subscription(subscription: WebhookSubscription, actor: Actor | Agent | None) -> None:
    """Its deliveries go with it, so nothing more is sent to a URL the brand has removed."""
    require_role(actor, subscription.brand_id, Role.ADMIN)
    db.session.execute(
        delete(WebhookDelivery)
        .where(WebhookDelivery.subscription_id == subscription.id)
        .execution_options(synchronize_session=False)
    )
    db.session.delete(subscription)
    db.session.flush()


def to_dict(subscription: WebhookSubscription) -> dict[str, Any]:
    """The API shape: the secret, even encrypted, is never part of it."""
    return {
        "id": subscription.id,
        "url": subscription.url,
        "events": list(subscription.events),
        "active": subscription.active,
        "created_at": _iso(subscription.created_at),
    }


# Events -----------------------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def message_data(message: Message) -> dict[str, Any]:
    """A message as a receiver sees it; vanish-mode content never leaves, since it must be
    purgeable and a copy sent elsewhere could not be."""
    return {
        "message_id": message.id,
        "conversation_id": message.conversation_id,
        "channel_id": message.channel_id,
        "ticket_id": message.ticket_id,
        "contact_id": message.contact_id,
        "author_agent_id": message.author_agent_id,
        "direction": message.direction.value,
        "kind": message.kind.value,
        "status": message.status.value,
        "mid": message.mid,
        "text": None if message.vanish else message.text,
        "attachments": [] if message.vanish else list(message.attachments or []),
        "reply_to_id": message.reply_to_id,
        "vanish": message.vanish,
        "automated": message.is_automated,
        "sent_at": _iso(message.sent_at),
        "send_at": _iso(message.send_at),
    }


def ticket_data(ticket: Ticket, **extra: Any) -> dict[str, Any]:
    """A ticket as a receiver sees it, with whatever the event adds (an SLA target ...)."""
    return {
        "ticket_id": ticket.id,
        "conversation_id": ticket.conversation_id,
        "channel_id": ticket.channel_id,
        "status": ticket.status.value,
        "priority": ticket.priority.value,
        "assignee_id": ticket.assignee_id,
        "team_id": ticket.team_id,
        "opened_at": _iso(ticket.opened_at),
        "resolved_at": _iso(ticket.resolved_at),
        **extra,
    }


def _subscriptions(brand_id: int) -> list[tuple[int, list[str]]]:
    return [
        (subscription_id, events)
        for subscription_id, events in db.session.execute(
            select(WebhookSubscription.id, WebhookSubscription.events).where(
                WebhookSubscription.brand_id == brand_id, WebhookSubscription.active.is_(True)
            )
        )
    ]


def emit(brand_id: int, event: str, payload: dict) -> int:
    """Queue the event for every active subscription of the brand that wants it, in the caller's
    transaction, so an event is sent exactly when the change that caused it is committed."""
    if event not in EVENTS:
        raise ValueError(f"unknown outgoing event {event!r}")
    subscriptions = cached(("subscriptions", brand_id), lambda: _subscriptions(brand_id))
    wanted = [subscription_id for subscription_id, events in subscriptions if event in events]
    if not wanted:
        return 0
    # A round trip through JSON: a payload that cannot be sent fails the caller, not the worker.
    data = json.loads(json.dumps(payload))
    db.session.add_all(
        WebhookDelivery(
            brand_id=brand_id, subscription_id=subscription_id, event=event, payload=data
        )
        for subscription_id in wanted
    )
    return len(wanted)


# Delivery ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    """What one attempt needs, read while the claim is taken so the HTTP call needs no session."""

    delivery_id: int
    subscription_id: int
    event: str
    attempt: int
    url: str
    secret: str
    body: bytes


def sign(secret: str, body: bytes) -> str:
    """The signature header's value: receivers compute the same over the exact bytes received."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def backoff(attempts: int) -> timedelta:
    """30 s doubled per attempt made, at most an hour apart: about two hours of retries in all."""
    return min(BACKOFF_BASE * 2**attempts, BACKOFF_CAP)


def _body(delivery: WebhookDelivery) -> bytes:
    envelope = {
        "id": delivery.id,
        "event": delivery.event,
        "created_at": _iso(delivery.created_at),
        "data": delivery.payload,
    }
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()


def _next_due(now: datetime) -> WebhookDelivery | None:
    query = (
        select(WebhookDelivery)
        .where(WebhookDelivery.status.in_(CLAIMABLE), WebhookDelivery.next_attempt_at <= now)
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(1)
    )
    if db.session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return db.session.scalar(query)


def _claim(delivery: WebhookDelivery, now: datetime) -> _Job | None:
    """Take the attempt under a lease and commit; None when there is nothing to send (the
    subscription is gone) or another worker claimed it first, which the conditional UPDATE
    detects where SKIP LOCKED is not available (SQLite)."""
    subscription = db.session.get(WebhookSubscription, delivery.subscription_id)
    attempt = delivery.attempts + 1
    values: dict[str, Any] = {"attempts": attempt, "status": SENDING}
    values["next_attempt_at"] = now + LEASE
    job = None
    if subscription is None or not subscription.active:
        values.update(status=FAILED, next_attempt_at=None, last_error="subscription disabled")
    else:
        try:
            secret = decrypt(subscription.secret_encrypted)
        except ValueError:
            values.update(status=FAILED, next_attempt_at=None, last_error="secret unreadable")
        else:
            job = _Job(
                delivery_id=delivery.id,
                subscription_id=subscription.id,
                event=delivery.event,
                attempt=attempt,
                url=subscription.url,
                secret=secret,
                body=_body(delivery),
            )
    claimed = rows_matched(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery.id,
            WebhookDelivery.attempts == delivery.attempts,
            WebhookDelivery.status.in_(CLAIMABLE),
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    if claimed and job is None:
        log.warning("webhook delivery %d given up: %s", delivery.id, values["last_error"])
    return job if claimed else None


def _post(client: httpx.Client, job: _Job) -> int:
    """POST to an address checked just now; the body is never read, only the status matters."""
    parsed, addresses = check_url(job.url)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Host": parsed.netloc.decode("ascii"),
        SIGNATURE_HEADER: sign(job.secret, job.body),
        EVENT_HEADER: job.event,
        DELIVERY_HEADER: str(job.delivery_id),
    }
    # The certificate is checked against the URL's host, whichever address is connected to.
    extensions = {"sni_hostname": parsed.raw_host.decode("ascii")}
    error: httpx.ConnectError | None = None
    for address in addresses:
        request = client.build_request(
            "POST",
            parsed.copy_with(host=address),
            content=job.body,
            headers=headers,
            extensions=extensions,
        )
        try:
            response = client.send(request, stream=True)
        except httpx.ConnectError as exc:
            error = exc
            continue
        response.close()
        return response.status_code
    raise error or httpx.ConnectError("no address to connect to")


def _attempt(client: httpx.Client, job: _Job) -> tuple[int | None, str | None]:
    """The status code and the error, if any: every failure is one to retry."""
    try:
        status_code = _post(client, job)
    except (ValidationError, httpx.HTTPError) as exc:
        return None, f"{type(exc).__name__}: {exc}"[:MAX_ERROR_LENGTH]
    if 200 <= status_code < 300:
        return status_code, None
    return status_code, f"HTTP {status_code}"


def _record(job: _Job, status_code: int | None, error: str | None, now: datetime) -> str | None:
    """Store the attempt's outcome, unless the lease ran out and another worker owns it now."""
    values: dict[str, Any] = {"last_status_code": status_code, "last_error": error}
    if error is None:
        values.update(status=DELIVERED, delivered_at=now, next_attempt_at=None)
    elif job.attempt >= MAX_ATTEMPTS:
        values.update(status=FAILED, next_attempt_at=None)
    else:
        values.update(status=PENDING, next_attempt_at=now + backoff(job.attempt))
    recorded = rows_matched(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == job.delivery_id,
            WebhookDelivery.status == SENDING,
            WebhookDelivery.attempts == job.attempt,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return values["status"] if recorded else None


def _log(job: _Job, outcome: str | None, status_code: int | None, error: str | None) -> None:
    """One line per attempt; the URL is left out, since it may carry credentials."""
    level = logging.INFO if outcome == DELIVERED else logging.WARNING
    log.log(
        level,
        "webhook delivery %d (subscription %d, %s) attempt %d: %s (status %s, error %s)",
        job.delivery_id,
        job.subscription_id,
        job.event,
        job.attempt,
        OUTCOMES.get(outcome, "outcome dropped, the claim was lost"),
        status_code,
        error,
    )


def deliver_due(now: datetime | None = None, limit: int = 100) -> int:
    """Attempt at most ``limit`` due deliveries, one at a time; returns how many were handled.

    Unlike other services this commits: each claim and each outcome in its own short
    transaction, so no transaction stays open during an HTTP call. A given ``now`` is the clock
    for everything (due times, backoff, delivered_at); otherwise the real time is read per step.
    """
    handled = 0
    with httpx.Client(timeout=TIMEOUT_SECONDS, follow_redirects=False, trust_env=False) as client:
        while handled < limit:
            delivery = _next_due(now or utcnow())
            if delivery is None:
                db.session.commit()
                break
            handled += 1
            job = _claim(delivery, now or utcnow())
            if job is None:
                continue
            status_code, error = _attempt(client, job)
            outcome = _record(job, status_code, error, now or utcnow())
            _log(job, outcome, status_code, error)
    return handled
