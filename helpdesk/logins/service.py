"""Checking a console sign-in, and refusing one for a while after repeated failures.

Failures are counted per email (since its last success) and per client address, in the database,
so that every web process applies the same lock. A sign-in is reserved (`reserve`, counted as a
failure until settled) before its password is checked (`authenticate`), and the caller commits
the reservation in between: concurrent requests then see each other, so no more passwords are
checked than the limit allows however many arrive at once. Functions flush; the caller commits.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update

from helpdesk.accounts.models import Agent
from helpdesk.accounts.service import check_password, hash_password
from helpdesk.database import rows_matched
from helpdesk.errors import DomainError
from helpdesk.extensions import db
from helpdesk.logins.models import LoginAttempt, LoginOutcome
from helpdesk.types import utcnow

KEEP_ATTEMPTS = timedelta(days=1)
MAX_EMAIL_CHARS = 254
MAX_PASSWORD_CHARS = 1024


DEACTIVATED = (
    "Your account has been deactivated. Ask an administrator of your helpdesk to reactivate it."
)


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
        self.until = until
        self.wait_words = f"{minutes} minute{'s' * (minutes != 1)}"
        super().__init__(f"Too many failed sign-ins. Try again in {self.wait_words}.")


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


# A reserved attempt counts as failed until its check says otherwise.
COUNTED_AS_FAILED = (LoginOutcome.FAILURE, LoginOutcome.PENDING)


def _recent_failures(where, limit: int, since: datetime) -> list[datetime]:
    return list(
        db.session.scalars(
            select(LoginAttempt.at)
            .where(where, LoginAttempt.outcome.in_(COUNTED_AS_FAILED), LoginAttempt.at > since)
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


def _prune(now: datetime) -> None:
    db.session.execute(delete(LoginAttempt).where(LoginAttempt.at < now - KEEP_ATTEMPTS))


def _lock_key(kind: str, value: str) -> int:
    digest = hashlib.sha256(f"login:{kind}:{value}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _serialize(email: str, ip: str) -> None:
    """Reservations of one email or one address count one after the other. PostgreSQL: advisory
    locks held to the end of the transaction, taken in one order so two never wait on each other.
    SQLite begins every transaction IMMEDIATE (helpdesk.database), holding its one write lock."""
    if db.session.get_bind().dialect.name != "postgresql":
        db.session.execute(select(1))  # begins the transaction: the lock is held from here
        return
    for key in sorted({_lock_key("email", email), _lock_key("ip", ip)}):
        db.session.execute(select(func.pg_advisory_xact_lock(key)))


@dataclass(frozen=True)
class Reservation:
    """A sign-in counted against the limits, its password not checked yet."""

    attempt_id: int
    email: str
    ip: str
    at: datetime
    policy: ThrottlePolicy


def reserve(
    email: str,
    ip: str,
    now: datetime | None = None,
    policy: ThrottlePolicy = ThrottlePolicy(),
) -> Reservation:
    """Count a sign-in before its password is checked, or LoginThrottled (recorded) while the
    email or the address is locked: a locked email is refused even with the right password.

    The caller commits at once, before `authenticate`: that ends the lock of `_serialize` and
    lets every other request count this one.
    """
    email, ip = normalize_email(email), (ip or "?")[:64]
    _serialize(email, ip)
    now = now or utcnow()  # taken under the lock: attempts are timed in the order they count
    until = throttled_until(email, ip, now, policy)
    if until is not None:
        db.session.add(LoginAttempt(email=email, ip=ip, outcome=LoginOutcome.THROTTLED, at=now))
        db.session.flush()
        raise LoginThrottled(until)
    attempt = LoginAttempt(email=email, ip=ip, outcome=LoginOutcome.PENDING, at=now)
    db.session.add(attempt)
    db.session.flush()
    return Reservation(attempt.id, email, ip, now, policy)


def authenticate(reservation: Reservation, password: str) -> Agent:
    """The active agent with the reserved email and this password, or InvalidCredentials /
    LoginThrottled (when this failure reached the limit); settles the reservation either way."""
    password = (password or "")[:MAX_PASSWORD_CHARS]
    email = reservation.email
    agent = db.session.scalar(select(Agent).where(Agent.email == email)) if email else None
    if agent is None:
        _burn_time(password)
        right = False
    else:
        right = check_password(agent, password)
    ok = right and agent is not None and agent.active
    # Only whoever knows the password learns why: anyone else is told of a wrong password.
    deactivated = right and agent is not None and agent.deactivated_at is not None
    settled = rows_matched(
        update(LoginAttempt)
        .where(LoginAttempt.id == reservation.attempt_id)
        .values(outcome=LoginOutcome.SUCCESS if ok else LoginOutcome.FAILURE)
        .execution_options(synchronize_session=False)
    )
    if settled != 1:  # pruned meanwhile: record the outcome anew
        db.session.add(
            LoginAttempt(
                email=email,
                ip=reservation.ip,
                outcome=LoginOutcome.SUCCESS if ok else LoginOutcome.FAILURE,
                at=reservation.at,
            )
        )
    if not ok:
        _prune(reservation.at)
        db.session.flush()
        until = throttled_until(email, reservation.ip, reservation.at, reservation.policy)
        if until is not None:
            raise LoginThrottled(until)
        raise InvalidCredentials(DEACTIVATED if deactivated else None)
    db.session.flush()
    return agent
