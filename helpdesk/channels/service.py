"""Connecting DM accounts to brands."""

from __future__ import annotations

from sqlalchemy import select

from helpdesk.brands.models import Brand
from helpdesk.channels.models import Channel, ChannelKind
from helpdesk.errors import AlreadyExists, NotFound, ValidationError
from helpdesk.extensions import db


def connect_channel(
    brand: Brand,
    kind: ChannelKind | str,
    account_id: str,
    access_token: str | None = None,
    name: str = "",
) -> Channel:
    """Register a channel, or give an existing one of the same brand a new token."""
    kind = ChannelKind(kind)
    account_id = str(account_id).strip()
    if not account_id.isdigit() and kind is ChannelKind.INSTAGRAM:
        raise ValidationError("an Instagram account id is digits")
    channel = db.session.scalar(
        select(Channel).where(Channel.kind == kind, Channel.account_id == account_id)
    )
    if channel is not None and channel.brand_id != brand.id:
        raise AlreadyExists("this account is connected to another brand")
    if channel is None:
        channel = Channel(brand_id=brand.id, kind=kind, account_id=account_id, name=name)
        db.session.add(channel)
    if access_token is not None:
        channel.access_token = access_token
        channel.needs_new_token = False
    db.session.flush()
    return channel


def channel_for_account(kind: ChannelKind, account_id: str) -> Channel:
    channel = db.session.scalar(
        select(Channel).where(Channel.kind == kind, Channel.account_id == str(account_id))
    )
    if channel is None:
        raise NotFound(f"no {kind.value} channel for account {account_id}")
    return channel
