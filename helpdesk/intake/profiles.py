"""Contact profiles from the Graph API, fetched by a worker and cached on the contact."""

from __future__ import annotations

import logging

import httpx
from flask import current_app

from helpdesk.brands.models import Brand
from helpdesk.channels import lifecycle
from helpdesk.channels.models import Channel, ChannelStatus
from helpdesk.delivery.sendapi import graph_client, refuses_access
from helpdesk.dm.models import Contact, Conversation, RequestState
from helpdesk.dm.service import is_known
from helpdesk.extensions import db
from helpdesk.inbox import service as inbox
from helpdesk.types import utcnow

log = logging.getLogger(__name__)
FIELDS = "name,username,profile_pic,is_user_follow_business,is_business_follow_user"


def fetch_profile(contact_id: int, timeout: float = 10.0) -> bool:
    """Fill in name, username, avatar and follow flags; on failure the contact keeps its id only."""
    contact = db.session.get(Contact, contact_id)
    if contact is None or contact.profile_fetched_at is not None:
        # Every message of a contact not fetched yet queues a fetch: only the first calls Meta.
        return False
    channel = db.session.get(Channel, contact.channel_id)
    if channel.kind.value != "instagram" or not channel.access_token_encrypted:
        return False
    if channel.status is not ChannelStatus.ACTIVE:
        return False  # fetched again once the channel is reconnected and the contact writes
    url = f"{current_app.config['GRAPH_API_BASE'].rstrip('/')}/{contact.platform_id}"
    try:
        response = graph_client().get(
            url,
            params={"fields": FIELDS},
            headers={"Authorization": f"Bearer {channel.access_token}"},
            timeout=timeout,
        )
        response.raise_for_status()
        profile = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        log.warning("profile of contact %s not fetched: %s", contact.id, type(exc).__name__)
        if isinstance(exc, httpx.HTTPStatusError):
            _check_access(channel, exc.response)
        return False
    if not isinstance(profile, dict):
        return False
    if isinstance(profile.get("username"), str):
        contact.username = profile["username"][:64]
    if isinstance(profile.get("name"), str):
        contact.name = profile["name"][:200]
    if isinstance(profile.get("profile_pic"), str) and profile["profile_pic"].startswith(
        "https://"
    ):
        contact.avatar_url = profile["profile_pic"]
    contact.follows_brand = bool(profile.get("is_user_follow_business", contact.follows_brand))
    contact.followed_by_brand = bool(
        profile.get("is_business_follow_user", contact.followed_by_brand)
    )
    contact.profile_fetched_at = utcnow()
    _accept_if_now_known(contact)
    db.session.flush()
    return True


def _check_access(channel: Channel, response: httpx.Response) -> None:
    """A refused token (190, 10, 200-299) marks the channel needs_reconnect, as a send does."""
    try:
        error = response.json().get("error") or {}
        code = int(error["code"])
    except (ValueError, AttributeError, KeyError, TypeError):
        return
    message = str(error.get("message") or "")
    if refuses_access(code, error.get("error_subcode"), message):
        lifecycle.mark_needs_reconnect(channel, f"profile lookup refused (code {code}): {message}")


def _accept_if_now_known(contact: Contact) -> None:
    """A request from someone the brand turns out to follow belongs in the inbox after all."""
    brand = db.session.get(Brand, contact.brand_id)
    if not is_known(brand, contact):
        return
    conversations = db.session.scalars(
        db.select(Conversation).where(
            Conversation.contact_id == contact.id,
            Conversation.request_state == RequestState.PENDING,
        )
    ).all()
    for conversation in conversations:
        inbox.accept(conversation, None)
