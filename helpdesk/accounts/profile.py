"""The signed-in agent's own account (/account): name, password, notification defaults and the
availability a sign-in starts with.

Only the agent changes these, so no role is checked: the caller passes the agent of the session.
Each change is audited in every brand the agent belongs to, since each brand's admins answer for
who works in their helpdesk (the rows hold nothing of another brand).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, select

from helpdesk.accounts import passwords
from helpdesk.accounts.invitations import PasswordReset
from helpdesk.accounts.models import Agent, Availability, Membership
from helpdesk.accounts.service import check_password, hash_password, sign_out_everywhere
from helpdesk.audit import service as audit
from helpdesk.errors import InvalidField
from helpdesk.extensions import db
from helpdesk.notifications.models import NotificationKind

MAX_NAME = 200
# The availabilities a sign-in may start with: "offline" would be no shift at all.
SIGN_IN_AVAILABILITIES = (Availability.ONLINE.value, Availability.AWAY.value)
PROFILE_FIELDS = ("name", "notification_defaults", "sign_in_availability")


def notification_defaults(agent: Agent) -> dict[str, bool]:
    """Every kind with the agent's choice; a kind never chosen reaches them (default all on)."""
    stored = agent.notification_defaults or {}
    return {kind.value: bool(stored.get(kind.value, True)) for kind in NotificationKind}


def receives(agent_id: int, kind: NotificationKind | str) -> bool:
    """Whether notifications of this kind reach the agent at all (their /account choice)."""
    stored = db.session.scalar(select(Agent.notification_defaults).where(Agent.id == agent_id))
    return bool((stored or {}).get(NotificationKind(kind).value, True))


def _clean_name(name: str) -> str:
    name = " ".join((name or "").split())
    if not name:
        raise InvalidField("name", "Enter your name.")
    if len(name) > MAX_NAME:
        raise InvalidField("name", f"Use at most {MAX_NAME} characters.")
    return name


def _clean_kinds(kinds: Iterable[str]) -> dict[str, bool]:
    wanted = set(kinds)
    known = {kind.value for kind in NotificationKind}
    if wanted - known:
        raise InvalidField("notifications", "Choose among the kinds of notification listed.")
    return {kind: kind in wanted for kind in sorted(known)}


def _clean_availability(value: str) -> str:
    if value not in SIGN_IN_AVAILABILITIES:
        raise InvalidField("sign_in_availability", "Choose online or away.")
    return value


def brand_ids(agent: Agent) -> list[int]:
    return list(
        db.session.scalars(
            select(Membership.brand_id)
            .where(Membership.agent_id == agent.id)
            .order_by(Membership.brand_id)
        )
    )


def _audit(agent: Agent, action: str, changes: dict[str, Any]) -> None:
    for brand_id in brand_ids(agent):
        audit.record(agent, brand_id, action, "agent", agent.id, changes, label=agent.name)


def update_profile(
    agent: Agent, name: str, notifications: Iterable[str], sign_in_availability: str
) -> Agent:
    """The agent's name, the notification kinds that reach them, and how a sign-in starts;
    all checked before any is changed."""
    after = {
        "name": _clean_name(name),
        "notification_defaults": _clean_kinds(notifications),
        "sign_in_availability": _clean_availability(sign_in_availability),
    }
    before = audit.snapshot(agent, PROFILE_FIELDS)
    before["notification_defaults"] = notification_defaults(agent)
    for field, value in after.items():
        setattr(agent, field, value)
    db.session.flush()
    changes = audit.diff(before, after)
    if changes:
        _audit(agent, "agent.updated", changes)
    return agent


def change_password(agent: Agent, current: str, new: str, confirmation: str) -> Agent:
    """A new password, proven by the current one; every session of the agent ends (the caller
    signs the session that asked in again) and so do their unused reset links, as a reset does."""
    if not current or not check_password(agent, current):
        raise InvalidField("current_password", "This is not your current password.")
    passwords.check_password(new)
    if new != confirmation:
        raise InvalidField("password_confirmation", "This does not match the new password.")
    if check_password(agent, new):
        raise InvalidField("password", "This is your current password: choose a new one.")
    agent.password_hash = hash_password(new)
    sign_out_everywhere(agent)
    # A reset link asked for earlier would otherwise undo the change.
    db.session.execute(
        delete(PasswordReset).where(
            PasswordReset.agent_id == agent.id, PasswordReset.used_at.is_(None)
        )
    )
    _audit(agent, "agent.password_changed", {})
    return agent
