"""Messages written straight through the DM service, at a fixed time."""

from __future__ import annotations

from helpdesk.dm import service
from helpdesk.dm.models import Contact, Message
from helpdesk.dm.service import InboundMessage
from tests.factories import ContactFactory, at

T0 = at("2026-11-20 10:00")


def inbound(channel, sender="6120000000000001", mid="m1", when=T0, **kwargs) -> Message:
    return service.receive_inbound(
        channel, InboundMessage(mid=mid, sender_id=sender, sent_at=when, **kwargs)
    )


def followed_contact(channel, platform_id="6120000000000001") -> Contact:
    return ContactFactory(channel=channel, platform_id=platform_id, followed_by_brand=True)
