"""Meta's data-deletion requests: a person asked Instagram to have their data deleted from the
apps they used. The erase runs at once (one person's data is small), and the request's status
stays readable by its confirmation code, which Meta shows the person."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from helpdesk.channels import lifecycle
from helpdesk.channels.models import Channel, ChannelKind, ChannelStatus, DataDeletionRequest
from helpdesk.extensions import db
from helpdesk.privacy.erase import erase_platform_user
from helpdesk.types import utcnow

log = logging.getLogger(__name__)

RECEIVED, DONE, FAILED = "received", "done", "failed"
REASON = "data deletion requested on Instagram"
DEAUTHORIZED = "deauthorized on Instagram"


def instagram_channels(account_id: str) -> list[Channel]:
    return list(
        db.session.scalars(
            select(Channel).where(
                Channel.kind == ChannelKind.INSTAGRAM, Channel.account_id == account_id
            )
        )
    )


def deauthorize(platform_user_id: str, now: datetime | None = None) -> int:
    """The person removed the app from their Instagram account: the channel of that account (if
    any) stops, its token forgotten and its history kept. No call to the platform: the app has
    no access any more. Returns how many channels were disconnected."""
    count = 0
    for channel in instagram_channels(platform_user_id):
        if channel.status is ChannelStatus.DISCONNECTED:
            continue
        lifecycle.mark_disconnected(channel, None, reason=DEAUTHORIZED, now=now)
        count += 1
    return count


def request_deletion(platform_user_id: str, now: datetime | None = None) -> DataDeletionRequest:
    """Record the request and erase the person's data in the caller's transaction; if the erase
    fails, the request is kept as failed (its page says so) and the error is logged."""
    now = now or utcnow()
    request = DataDeletionRequest(
        confirmation_code=secrets.token_hex(16),
        platform_user_id=platform_user_id,
        status=RECEIVED,
        created_at=now,
    )
    db.session.add(request)
    db.session.flush()
    try:
        with db.session.begin_nested():
            request.contacts_erased = erase_platform_user(platform_user_id, reason=REASON)
            # The person may be the owner of a connected business account: it stops too.
            for channel in instagram_channels(platform_user_id):
                if channel.status is not ChannelStatus.DISCONNECTED:
                    lifecycle.mark_disconnected(channel, None, reason=REASON, now=now)
    except Exception:
        log.exception("data deletion %s failed", request.id)
        request.status = FAILED
    else:
        request.status = DONE
        request.completed_at = utcnow()
    db.session.flush()
    return request


def find(confirmation_code: str) -> DataDeletionRequest | None:
    if not confirmation_code or len(confirmation_code) > 64:
        return None
    return db.session.scalar(
        select(DataDeletionRequest).where(
            DataDeletionRequest.confirmation_code == confirmation_code
        )
    )


@dataclass(frozen=True)
class Status:
    """A request as its public page and JSON show it: no id of the person, only what happened."""

    confirmation_code: str
    status: str
    received_at: datetime
    completed_at: datetime | None
    contacts_erased: int
    channels_disconnected: int

    @property
    def sentence(self) -> str:
        received = f"Received on {_day(self.received_at)}"
        if self.status == FAILED:
            return f"{received}; the erase failed and will be looked into."
        if self.status != DONE or self.completed_at is None:
            return f"{received}; the erase is in progress."
        done = f"{received}, completed on {_day(self.completed_at)}: "
        if self.contacts_erased:
            contacts = "contact" if self.contacts_erased == 1 else "contacts"
            done += f"the data of {self.contacts_erased} {contacts} was erased"
        else:
            done += "no message or profile of this person was held"
        if self.channels_disconnected:
            done += ", and the connected Instagram account was disconnected"
        return done + "."

    def as_json(self) -> dict:
        return {
            "confirmation_code": self.confirmation_code,
            "status": self.status,
            "received_at": _iso(self.received_at),
            "completed_at": _iso(self.completed_at),
            "contacts_erased": self.contacts_erased,
            "channels_disconnected": self.channels_disconnected,
            "message": self.sentence,
        }


def status_of(request: DataDeletionRequest) -> Status:
    disconnected = sum(
        1
        for channel in instagram_channels(request.platform_user_id)
        if channel.disconnected_at is not None and channel.disconnected_at >= request.created_at
    )
    return Status(
        confirmation_code=request.confirmation_code,
        status=request.status,
        received_at=request.created_at,
        completed_at=request.completed_at,
        contacts_erased=request.contacts_erased,
        channels_disconnected=disconnected,
    )


def _day(value: datetime) -> str:
    return value.strftime("%d %B %Y").lstrip("0")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None
