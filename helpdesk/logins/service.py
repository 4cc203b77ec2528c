"""Checking a console sign-in, and refusing one for a while after repeated failures.

Failures are counted per email (since its last success) and per client address, in the database,
so that every web process applies the same lock. Functions flush; the caller commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select

from helpdesk.accounts.models import Agent
from helpdesk.accounts.service import check_password, hash_password
from helpdesk.errors import DomainError
from helpdesk.extensions import db
from helpdesk.logins.models import LoginAttempt, LoginOutcome
from helpdesk.types import utcnow

KEEP_ATTEMPTS = timedelta(days=1)
MAX_EMAIL_CHARS = 254
MAX_PASSWORD_CHARS = 1024


class InvalidCredentials(DomainError):
    """Wrong email or password."""

    code = "invalid_credentials"
    status = 401


class LoginThrottled(DomainError):
    """Too many failed sign-ins: wait before trying again."""

    code = "login_throttled"
    status = 429

    def __init__(self, until: datetime):
        minutes = max(1, round((until - utcnow()).total_seconds() / 60))
        super().__init__(
            f"Too many failed sign-ins. Try again in {minutes} minute{'s' * (minutes != 1)}."
        )
        self.until = until


@dataclass(frozen=True)
class ThrottlePolicy:
    """`per_email` failures within `window` lock the email for `window` after the last of them;
    the same for `per_ip` failures from one address (set higher: offices share addresses)."""

    per_email: int = 5
    per_ip: int = 20
    window: timedelta = timedelta(minutes=15)


_dummy_hash: str | None = None


def _burn_time(password: str) -> None:
    """Verify against a throwaway hash, so an unknown email takes as long as a wrong password."""
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = hash_password("not a password of anyone")
    check_password(Agent(password_hash=_dummy_hash), password)


def normalize_email(email: str) -> str:
    return (email or "").strip().lower()[:MAX_EMAIL_CHARS]


def _locked_until(failures: list[datetime], limit: int, window: timedelta) -> datetime | None:
    """`failures` newest first: locked when the last `limit` of them fit in one window."""
    if limit < 1 or len(failures) < limit:
        return None
    newest, oldest = failures[0], failures[limit - 1]
    if newest - oldest > window:
        return None
    return newest + window


def _recent_failures(where, limit: int, since: datetime) -> list[datetime]:
    return list(
        db.session.scalars(
            select(LoginAttempt.at)
            .where(where, LoginAttempt.outcome == LoginOutcome.FAILURE, LoginAttempt.at > since)
            .order_by(LoginAttempt.at.desc())
            .limit(max(limit, 1))
        )
    )


def throttled_until(
    email: str, ip: str, now: datetime | None = None, policy: ThrottlePolicy = ThrottlePolicy()
) -> datetime | None:
    """When sign-ins for this email or from this address are allowed again; None: they are."""
    now = now or utcnow()
    email = normalize_email(email)
    since = now - 2 * policy.window
    last_success = db.session.scalar(
        select(func.max(LoginAttempt.at)).where(
            LoginAttempt.email == email, LoginAttempt.outcome == LoginOutcome.SUCCESS
        )
    )
    by_email = _recent_failures(
        LoginAttempt.email == email, policy.per_email, max(since, last_success or since)
    )
    by_ip = _recent_failures(LoginAttempt.ip == ip, policy.per_ip, since)
    locks = [
        until
        for until in (
            _locked_until(by_email, policy.per_email, policy.window),
            _locked_until(by_ip, policy.per_ip, policy.window),
        )
        if until is not None and until > now
    ]
    return max(locks, default=None)


def _record(email: str, ip: str, outcome: LoginOutcome, now: datetime) -> None:
    db.session.add(LoginAttempt(email=email, ip=ip[:64], outcome=outcome, at=now))
    if outcome is LoginOutcome.FAILURE:
        db.session.execute(delete(LoginAttempt).where(LoginAttempt.at < now - KEEP_ATTEMPTS))
    db.session.flush()


def authenticate(
    email: str,
    password: str,
    ip: str,
    now: datetime | None = None,
    policy: ThrottlePolicy = ThrottlePolicy(),
) -> Agent:
    """The active agent with this email and password, or InvalidCredentials / LoginThrottled.

    A locked email or address is refused before the password is even checked, so a correct
    password does not get in while the lock lasts.
    """
    now = now or utcnow()
    email = normalize_email(email)
    password = (password or "")[:MAX_PASSWORD_CHARS]
    until = throttled_until(email, ip, now, policy)
    if until is not None:
        _record(email, ip, LoginOutcome.THROTTLED, now)
        raise LoginThrottled(until)
    agent = db.session.scalar(select(Agent).where(Agent.email == email)) if email else None
    if agent is None or not agent.active:
        _burn_time(password)
        ok = False
    else:
        ok = check_password(agent, password)
    if not ok:
        _record(email, ip, LoginOutcome.FAILURE, now)
        until = throttled_until(email, ip, now, policy)
        if until is not None:
            raise LoginThrottled(until)
        raise InvalidCredentials()
    _record(email, ip, LoginOutcome.SUCCESS, now)
    return agent
