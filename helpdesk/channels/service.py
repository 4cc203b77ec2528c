"""Connecting DM accounts to brands."""

from __future__ import annotations

from sqlalchemy import select

from helpdesk.accounts.actor import Actor
from helpdesk.accounts.models import Agent
from helpdesk.audit.service import HIDDEN, created, record
from helpdesk.brands.models import Brand
from helpdesk.channels.models import Channel, ChannelKind
from helpdesk.errors import AlreadyExists, InvalidField, ValidationError
from helpdesk.extensions import db


def connect_channel(
    brand: Brand,
    kind: ChannelKind | str,
    account_id: str,
    access_token: str | None = None,
    name: str = "",
    actor: Actor | Agent | None = None,
) -> Channel:
    """Register a channel, or give an existing one of the same brand a new token; either is
    recorded in the audit log as a connection (by the system unless an actor is given)."""
    kind = ChannelKind(kind)
    account_id = str(account_id).strip()
    if not account_id.isdigit() and kind is ChannelKind.INSTAGRAM:
        raise ValidationError("an Instagram account id is digits")
    channel = db.session.scalar(
        select(Channel).where(Channel.kind == kind, Channel.account_id == account_id)
    )
    if channel is not None and channel.brand_id != brand.id:
        raise AlreadyExists("this account is connected to another brand")
    changes: dict[str, list] = {}
    if channel is None:
        channel = Channel(brand_id=brand.id, kind=kind, account_id=account_id, name=name)
        db.session.add(channel)
        changes = created({"kind": kind, "account_id": account_id, "name": name})
    if access_token is not None:
        channel.access_token = access_token
        channel.needs_new_token = False
        changes["token"] = [HIDDEN, HIDDEN]  # that it changed, never what it is
    db.session.flush()
    if changes:
        label = f"{kind.value} {name or account_id}"
        record(actor, brand.id, "channel.connected", "channel", channel.id, changes, label=label)
    return channel


def api_channel(brand_id: int, channel_id: int) -> Channel:
    """Only the brand's own `api` channels take posted messages: Instagram's come through its
    webhook."""
    channel = db.session.get(Channel, channel_id)
    if channel is None or channel.brand_id != brand_id or channel.kind is not ChannelKind.API:
        raise InvalidField("channel_id", "no api channel of this brand has this id")
    return channel
