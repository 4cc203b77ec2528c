"""Instagram webhook deliveries as Meta sends them: signed, posted, and processed as a worker
would (docs/webhook.md)."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

from sqlalchemy import select

from helpdesk.channels.models import Channel
from helpdesk.channels.service import connect_channel
from helpdesk.extensions import db
from helpdesk.intake import batch
from helpdesk.intake import service as intake
from helpdesk.intake.models import EventStatus, WebhookEvent
from tests.factories import BrandFactory

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "webhooks"
ACCOUNT = "17841400000000001"
SECRET = "test-app-secret"


def sign(raw: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def post(client, raw: bytes, signature: str | None = None):
    headers = {"Content-Type": "application/json"}
    headers["X-Hub-Signature-256"] = sign(raw) if signature is None else signature
    return client.post("/webhooks/instagram", data=raw, headers=headers)


def text_delivery(n: int, mid_prefix: str) -> bytes:
    """A delivery of one text message, the `n`th: its own sender, timestamp and mid."""
    event = {
        "sender": {"id": f"61200000{n:08d}"},
        "recipient": {"id": ACCOUNT},
        "timestamp": 1763800000000 + n,
        "message": {"mid": f"{mid_prefix}{n}", "text": f"message {n}"},
    }
    return json.dumps(
        {"object": "instagram", "entry": [{"id": ACCOUNT, "messaging": [event]}]}
    ).encode()


def process_all() -> None:
    """What the worker does with stored deliveries: batches until none is pending."""
    while batch.process_batch() is not None:
        pass


def process_each() -> None:
    """Each stored delivery alone, as the worker does after a batch failed."""
    for event_id in db.session.scalars(
        select(WebhookEvent.id).where(WebhookEvent.status == EventStatus.PENDING)
    ).all():
        intake.process_event(event_id)
        db.session.commit()


def connect_example_channel() -> Channel:
    """The Instagram account the example bodies in tests/fixtures/webhooks are addressed to."""
    channel = connect_channel(BrandFactory(), "instagram", ACCOUNT, "page-token")
    db.session.commit()
    return channel
