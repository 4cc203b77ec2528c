"""Connecting an Instagram account with Instagram Login, and disconnecting it.

`start` sends the admin to Instagram with a `state` that only this admin's browser session can
bring back, once, within ten minutes (only its hash is kept). `finish` takes what Instagram sent
back: it spends the state and the code first, in a transaction of their own, since both are
single use at Meta's end too and a replayed callback must not try again; then it exchanges the
code, gets the long-lived token and the account's identity, subscribes the account to the
webhook fields the intake reads, and only then creates or renews the channel. Any refusal on the
way leaves the channels exactly as they were.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from flask import current_app, has_request_context, request
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from helpdesk import transaction
from helpdesk.accounts.actor import Actor
from helpdesk.accounts.models import Agent, Role
from helpdesk.accounts.service import role_in
from helpdesk.brands.models import Brand
from helpdesk.channels import lifecycle
from helpdesk.channels.graph_client import GraphError, account_id, call, graph_base, graph_origin
from helpdesk.channels.models import Channel, ChannelKind, ChannelStatus, OAuthState
from helpdesk.errors import DomainError, InvalidState, NotFound
from helpdesk.extensions import db
from helpdesk.types import utcnow

log = logging.getLogger(__name__)

STATE_LIFETIME = timedelta(minutes=10)
SCOPES = "instagram_business_basic,instagram_business_manage_messages"
SUBSCRIBED_FIELDS = (
    "messages,messaging_postbacks,messaging_seen,message_reactions,messaging_referral"
)
CALLBACK_PATH = "/oauth/instagram/callback"
TRY_AGAIN = "Start again from Settings › Channels."


class LoginRefused(DomainError):
    """Instagram Login did not connect the account; the message says why, in words."""


@dataclass(frozen=True)
class Account:
    """What Instagram says about the account that was signed in."""

    user_id: str
    username: str
    name: str
    access_token: str
    expires_at: datetime | None


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def redirect_uri() -> str:
    """Where Instagram sends the browser back: PUBLIC_BASE_URL, else the address of the request
    (a development server reached at its own address)."""
    base = current_app.config.get("PUBLIC_BASE_URL")
    if not base and has_request_context():
        base = request.url_root
    return (base or "http://127.0.0.1:5000").rstrip("/") + CALLBACK_PATH


def start(brand: Brand, agent: Agent, session_id: str) -> str:
    """A new single-use state for this admin's session; the authorize URL to send them to."""
    app_id = current_app.config.get("INSTAGRAM_APP_ID")
    if not app_id:
        raise InvalidState(
            "Instagram Login is not set up on this server: ask whoever runs it to set "
            "INSTAGRAM_APP_ID and INSTAGRAM_APP_SECRET."
        )
    state = secrets.token_urlsafe(32)
    now = utcnow()
    db.session.add(
        OAuthState(
            state_hash=_hash(state),
            session_hash=_hash(session_id),
            brand_id=brand.id,
            agent_id=agent.id,
            created_at=now,
            expires_at=now + STATE_LIFETIME,
        )
    )
    db.session.flush()
    query = urlencode(
        {
            "client_id": app_id,
            "redirect_uri": redirect_uri(),
            "response_type": "code",
            "scope": SCOPES,
            "state": state,
        },
        safe=",:/",
    )
    return f"{current_app.config['INSTAGRAM_AUTH_BASE'].rstrip('/')}/oauth/authorize?{query}"


def claim(state: str, code: str, session_id: str, agent: Agent) -> OAuthState:
    """Check the state and the code and spend them (flushed, not committed)."""
    row = db.session.scalar(select(OAuthState).where(OAuthState.state_hash == _hash(state or "")))
    if row is None:
        raise LoginRefused(f"This sign-in with Instagram was not started here. {TRY_AGAIN}")
    if row.used_at is not None:
        raise LoginRefused(f"This sign-in with Instagram was already used. {TRY_AGAIN}")
    if row.expires_at <= utcnow():
        raise LoginRefused(f"This sign-in with Instagram took more than 10 minutes. {TRY_AGAIN}")
    if row.session_hash != _hash(session_id) or row.agent_id != agent.id:
        raise LoginRefused(
            f"This sign-in with Instagram was started in another browser session. {TRY_AGAIN}"
        )
    if role_in(agent.id, row.brand_id) is not Role.ADMIN:
        raise LoginRefused("Only an admin of the brand can connect an Instagram account.")
    code = clean_code(code)
    if not code:
        raise LoginRefused(f"Instagram sent no authorization code back. {TRY_AGAIN}")
    if db.session.scalar(select(OAuthState.id).where(OAuthState.code_hash == _hash(code))):
        raise LoginRefused(f"This authorization code was already used. {TRY_AGAIN}")
    # One statement, so two callbacks racing with the same state cannot both pass.
    spent = db.session.execute(
        update(OAuthState)
        .where(OAuthState.id == row.id, OAuthState.used_at.is_(None))
        .values(used_at=utcnow(), code_hash=_hash(code))
        .execution_options(synchronize_session=False)
    )
    if getattr(spent, "rowcount", 1) != 1:
        raise LoginRefused(f"This sign-in with Instagram was already used. {TRY_AGAIN}")
    db.session.refresh(row)
    return row


def clean_code(code: str | None) -> str:
    """Instagram appends `#_` to the redirect; a browser drops the fragment, a copy does not."""
    return (code or "").strip().removesuffix("#_")


def finish(state: str, code: str, session_id: str, agent: Agent) -> Channel:
    """The callback's work: a connected (or reconnected) channel, or a LoginRefused in words.
    Commits the spent state itself; the caller commits the channel."""
    try:
        row = claim(state, code, session_id, agent)
        brand_id = row.brand_id
        transaction.commit()
    except IntegrityError:  # the same code, presented by two callbacks at once
        transaction.rollback()
        raise LoginRefused(f"This authorization code was already used. {TRY_AGAIN}") from None
    try:
        account = fetch_account(clean_code(code))
        holder = _holder(account.user_id)
        if holder is not None and holder.brand_id != brand_id:
            raise LoginRefused(
                f"The Instagram account @{account.username} is connected to another brand. "
                "Disconnect it there first."
            )
        subscribe(account)
    except GraphError as exc:
        raise LoginRefused(exc.message) from None
    actor = Actor.for_agent(agent, brand_id)
    return _connect(brand_id, holder, account, actor)


def fetch_account(code: str) -> Account:
    """Code → short-lived token → long-lived token → the account's identity."""
    config = current_app.config
    short = _token_answer(
        call(
            "POST",
            f"{config['INSTAGRAM_TOKEN_BASE'].rstrip('/')}/oauth/access_token",
            form={
                "client_id": config.get("INSTAGRAM_APP_ID") or "",
                "client_secret": config.get("INSTAGRAM_APP_SECRET") or "",
                "grant_type": "authorization_code",
                "redirect_uri": redirect_uri(),
                "code": code,
            },
            what="Exchanging the authorization code",
        )
    )
    long_lived = call(
        "GET",
        f"{graph_origin()}/access_token",
        params={
            "grant_type": "ig_exchange_token",
            "client_secret": config.get("INSTAGRAM_APP_SECRET") or "",
            "access_token": short["access_token"],
        },
        what="Getting a long-lived token",
    )
    token = long_lived.get("access_token")
    if not isinstance(token, str) or not token:
        raise GraphError("Getting a long-lived token: Instagram's answer had no token.")
    me = call(
        "GET",
        f"{graph_base()}/me",
        params={"fields": "user_id,username,name,profile_picture_url,account_type"},
        token=token,
        what="Reading the account",
    )
    user_id = account_id(me.get("user_id")) or short["user_id"]
    if not user_id:
        raise GraphError("Reading the account: Instagram's answer had no account id.")
    return Account(
        user_id=user_id,
        username=str(me.get("username") or ""),
        name=str(me.get("name") or ""),
        access_token=token,
        expires_at=_expires_at(long_lived.get("expires_in")),
    )


def _token_answer(answer: dict) -> dict[str, Any]:
    """The exchange's answer, flat or inside `{"data": [...]}` as Meta documents it."""
    data = answer.get("data")
    if isinstance(data, list) and data and isinstance(data[0], dict):
        answer = data[0]
    token = answer.get("access_token")
    if not isinstance(token, str) or not token:
        raise GraphError("Exchanging the authorization code: Instagram's answer had no token.")
    permissions = answer.get("permissions") or []
    if isinstance(permissions, str):
        permissions = [p.strip() for p in permissions.split(",") if p.strip()]
    missing = [p for p in SCOPES.split(",") if p not in permissions]
    if permissions and missing:
        raise GraphError(
            "The account was connected without the permission to "
            + ("manage messages" if "instagram_business_manage_messages" in missing else "read it")
            + ". Connect again and allow every permission Instagram asks for."
        )
    return {"access_token": token, "user_id": account_id(answer.get("user_id")),
            "permissions": permissions}  # fmt: skip


def _expires_at(expires_in: Any) -> datetime | None:
    try:
        seconds = int(expires_in)
    except (TypeError, ValueError, ArithmeticError):
        return None
    return utcnow() + timedelta(seconds=seconds) if seconds > 0 else None


def subscribe(account: Account) -> None:
    """Ask Meta to deliver this account's messages to the webhook; a non-success is refused."""
    answer = call(
        "POST",
        f"{graph_base()}/{account.user_id}/subscribed_apps",
        params={"subscribed_fields": SUBSCRIBED_FIELDS},
        token=account.access_token,
        what="Subscribing the account to messages",
    )
    if answer.get("success") is not True:
        raise GraphError(
            "Subscribing the account to messages: Instagram did not confirm it, so messages "
            "would not arrive. Try again."
        )


def _holder(user_id: str) -> Channel | None:
    return db.session.scalar(
        select(Channel).where(Channel.kind == ChannelKind.INSTAGRAM, Channel.account_id == user_id)
    )


def _connect(brand_id: int, channel: Channel | None, account: Account, actor: Actor) -> Channel:
    if channel is None:
        channel = Channel(
            brand_id=brand_id,
            kind=ChannelKind.INSTAGRAM,
            account_id=account.user_id,
            name=account.name or account.username,
            username=account.username,
        )
        # Not flushed: mark_connected records it as going from nothing to active.
        db.session.add(channel)
    return lifecycle.mark_connected(
        channel,
        account.access_token,
        expires_at=account.expires_at,
        username=account.username,
        name=account.name,
        actor=actor,
    )


def brand_channel(brand_id: int, channel_id: int) -> Channel:
    """The brand's channel by id; another brand's is not found (brands never leak)."""
    channel = db.session.get(Channel, channel_id)
    if channel is None or channel.brand_id != brand_id:
        raise NotFound("No such channel in this brand.")
    return channel


def disconnect(channel: Channel, actor: Actor | Agent) -> Channel:
    """Stop Meta's deliveries and forget the token; conversations and messages stay."""
    if isinstance(actor, Actor):
        actor.require(Role.ADMIN, "Disconnecting an account", brand_id=channel.brand_id)
    if channel.kind is not ChannelKind.INSTAGRAM:
        raise InvalidState("Only Instagram accounts are disconnected here.")
    if channel.status is ChannelStatus.DISCONNECTED:
        return channel
    token = channel.access_token
    if token:
        try:
            call(
                "DELETE",
                f"{graph_base()}/{channel.account_id}/subscribed_apps",
                token=token,
                what="Unsubscribing the account",
            )
        except GraphError as exc:
            # The token may already be dead: the disconnect still happens, Meta stops on its own.
            log.warning("unsubscribing channel %s failed: %s", channel.id, exc.message)
    return lifecycle.mark_disconnected(channel, actor=actor, reason="disconnected by an admin")
