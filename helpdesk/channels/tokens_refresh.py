"""Keeping Instagram Login tokens alive: a long-lived token dies 60 days after it was issued
unless it is refreshed, and Meta refreshes only a token at least 24 hours old.

Every day (beat, or `flask refresh-instagram-tokens`) each active Instagram channel whose token
is over 24 hours old and expires within 15 days is refreshed. A token whose expiry is unknown (one
pasted with `flask connect-instagram`) counts as due, so it gets a known expiry. A refusal that
says the token or permission is gone marks the channel needs_reconnect; a network failure changes
nothing and the next day tries again.

Like the delivery, `refresh_due` commits: no transaction stays open while Meta answers.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from flask import current_app
from sqlalchemy import func, or_, select

from helpdesk.audit.service import HIDDEN, record
from helpdesk.channels import lifecycle
from helpdesk.channels.models import Channel, ChannelKind, ChannelStatus
from helpdesk.delivery.sendapi import DEFAULT_TIMEOUT_SECONDS, graph_client, refuses_access
from helpdesk.extensions import db
from helpdesk.types import utcnow

log = logging.getLogger(__name__)

MINIMUM_AGE = timedelta(hours=24)
REFRESH_WITHIN = timedelta(days=15)
REFRESHED = "refreshed"
REFUSED = "refused"  # the channel now needs a reconnect
FAILED = "failed"  # nothing changed: tried again next time
_VERSION = re.compile(r"/v\d+(\.\d+)?/*$")


@dataclass(frozen=True)
class Outcome:
    channel_id: int
    label: str
    result: str
    expires_at: datetime | None = None
    reason: str = ""


def graph_origin() -> str:
    """GRAPH_API_BASE without its version segment: the token endpoints are not versioned."""
    return _VERSION.sub("", current_app.config["GRAPH_API_BASE"].rstrip("/"))


def due_channel_ids(now: datetime) -> list[int]:
    age = func.coalesce(Channel.token_refreshed_at, Channel.connected_at, Channel.created_at)
    return list(
        db.session.scalars(
            select(Channel.id)
            .where(
                Channel.kind == ChannelKind.INSTAGRAM,
                Channel.status == ChannelStatus.ACTIVE,
                Channel.access_token_encrypted.is_not(None),
                age <= now - MINIMUM_AGE,
                or_(
                    Channel.token_expires_at.is_(None),
                    Channel.token_expires_at <= now + REFRESH_WITHIN,
                ),
            )
            .order_by(Channel.id)
        )
    )


def refresh_due(now: datetime | None = None) -> list[Outcome]:
    """Refresh every due token, one channel at a time, committing after each."""
    now = now or utcnow()
    ids = due_channel_ids(now)
    db.session.commit()
    outcomes = []
    for channel_id in ids:
        outcomes.append(refresh_channel(channel_id, now))
        db.session.commit()
    return outcomes


def refresh_channel(channel_id: int, now: datetime | None = None) -> Outcome:
    """One refresh call and what it means for the channel: commits before the call (nothing is
    held while Meta answers); the caller commits what follows."""
    now = now or utcnow()
    channel = db.session.get(Channel, channel_id)
    label = lifecycle._label(channel)
    try:
        token = channel.access_token
    except ValueError:
        return Outcome(channel_id, label, FAILED, reason="the stored token cannot be read")
    db.session.commit()  # nothing held while Meta answers
    answer = _call(token or "")
    channel = db.session.get(Channel, channel_id)
    if isinstance(answer, Outcome):
        return _refused(channel, label, answer, now)
    new_token, expires_in = answer
    before = channel.token_expires_at
    channel.access_token = new_token
    channel.token_expires_at = now + timedelta(seconds=expires_in) if expires_in else None
    channel.token_refreshed_at = now
    db.session.flush()
    changes = {
        "token": [HIDDEN, HIDDEN],
        "token_expires_at": [_iso(before), _iso(channel.token_expires_at)],
    }
    record(None, channel.brand_id, "channel.token_refreshed", "channel", channel.id, changes,
           label=label)  # fmt: skip
    log.info("channel %s: token refreshed until %s", channel.id, channel.token_expires_at)
    return Outcome(channel_id, label, REFRESHED, expires_at=channel.token_expires_at)


def _refused(channel: Channel, label: str, answer: Outcome, now: datetime) -> Outcome:
    if answer.result == REFUSED:
        lifecycle.mark_needs_reconnect(channel, answer.reason, now=now)
    log.warning("channel %s: token not refreshed: %s", channel.id, answer.reason)
    return Outcome(channel.id, label, answer.result, reason=answer.reason)


def _call(token: str) -> tuple[str, int | None] | Outcome:
    """(new token, seconds it lives) or why not: REFUSED when Meta says the token is gone."""
    timeout = float(current_app.config.get("GRAPH_API_TIMEOUT", DEFAULT_TIMEOUT_SECONDS))
    try:
        response = graph_client().get(
            f"{graph_origin()}/refresh_access_token",
            params={"grant_type": "ig_refresh_token", "access_token": token},
            timeout=timeout,
        )
        body = response.json()
    except httpx.HTTPError as exc:
        return Outcome(
            0, "", FAILED, reason=f"Instagram could not be reached ({type(exc).__name__})"
        )
    except ValueError:
        return Outcome(
            0, "", FAILED, reason=f"Instagram's answer was not JSON (HTTP {response.status_code})"
        )
    if isinstance(body, dict) and isinstance(body.get("data"), list) and body["data"]:
        body = body["data"][0]  # some answers come wrapped, as the code exchange's do
    if not isinstance(body, dict):
        return Outcome(0, "", FAILED, reason="Instagram's answer was not understood")
    error = body.get("error")
    if response.is_success and isinstance(body.get("access_token"), str) and body["access_token"]:
        return body["access_token"], _seconds(body.get("expires_in"))
    return _error_outcome(error if isinstance(error, dict) else {}, response.status_code)


def _error_outcome(error: dict, status: int) -> Outcome:
    detail = str(error.get("message") or f"HTTP {status}")
    try:
        code = int(error["code"])
    except (KeyError, TypeError, ValueError):
        return Outcome(0, "", FAILED, reason=f"Instagram refused the refresh: {detail}")
    if refuses_access(code, error.get("error_subcode"), detail):
        return Outcome(
            0, "", REFUSED, reason=f"Instagram refused the token (code {code}): {detail}"
        )
    return Outcome(0, "", FAILED, reason=f"Instagram refused the refresh (code {code}): {detail}")


def _seconds(value: object) -> int | None:
    try:
        seconds = int(str(value))
    except ValueError:
        return None
    return seconds if seconds > 0 else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
