"""Changing a brand's settings: the one place their rules live, for the console and the API.

Every value is checked before anything is written, so a refused change leaves the brand as it
was, and the refusal names each field that is wrong (a form shows each message by its field).
Values may come typed (the API) or as the text a form posts ("7", "", "yes"): both mean the same.
A manager may change the satisfaction survey only; everything else needs an admin.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from functools import cache
from typing import Any
from zoneinfo import available_timezones

from sqlalchemy import select

from helpdesk.accounts.actor import Actor, as_actor
from helpdesk.accounts.models import Agent, Role
from helpdesk.audit.service import diff, record, snapshot
from helpdesk.brands.models import Brand
from helpdesk.errors import InvalidField, ValidationError
from helpdesk.extensions import db
from helpdesk.sla.models import BusinessHours
from helpdesk.sla.policies import set_calendar
from helpdesk.types import utcnow

CSAT_FIELDS = ("csat_enabled", "csat_question", "csat_delay_minutes")
ADMIN_FIELDS = (
    "name",
    "timezone",
    "reopen_days",
    "followers_are_known",
    "accept_all_requests",
    "hidden_words",
    "retention_days",
)
FIELDS = ADMIN_FIELDS + CSAT_FIELDS

MAX_HIDDEN_WORDS = 500
MAX_HIDDEN_WORD_LENGTH = 100


@cache
def time_zones() -> tuple[str, ...]:
    """The IANA names this machine knows, sorted: what the console offers and the API accepts."""
    return tuple(sorted(available_timezones()))


UNSTORABLE = "This text contains a character that cannot be stored; please type it again."


def _text(value: Any, field: str, longest: int, empty: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidField(field, empty)
    value = value.strip()
    if "\x00" in value:
        raise InvalidField(field, UNSTORABLE)
    if len(value) > longest:
        raise InvalidField(field, f"Use at most {longest} characters (this has {len(value)}).")
    return value


def _whole(value: Any, field: str, lowest: int, highest: int, message: str) -> int:
    """A whole number in range, given as a number or as the digits a form posts."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not lowest <= value <= highest:
        raise InvalidField(field, message)
    return value


def _yes_no(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"1", "on", "yes", "true"}:
        return True
    if isinstance(value, str) and value.strip().lower() in {"", "0", "off", "no", "false"}:
        return False
    raise InvalidField(field, "Choose yes or no.")


def _name(value: Any, _brand: Brand) -> str:
    return _text(value, "name", 200, "Give the brand a name.")


def _timezone(value: Any, brand: Brand) -> str:
    """An IANA name; the brand's current one is kept even if this machine no longer lists it."""
    name = value.strip() if isinstance(value, str) else value
    if not name:
        raise InvalidField("timezone", "Pick a time zone, like Europe/Paris.")
    if name != brand.timezone and name not in time_zones():
        raise InvalidField(
            "timezone", f"{name} is not a time zone we know; pick one like Europe/Paris"
        )
    return name


def _reopen_days(value: Any, _brand: Brand) -> int:
    return _whole(
        value,
        "reopen_days",
        0,
        365,
        "The reopen period is a whole number of days from 0 to 365.",
    )


def _retention_days(value: Any, _brand: Brand) -> int | None:
    """None (or an empty form field) keeps conversations forever."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return _whole(
        value,
        "retention_days",
        1,
        3650,
        "Keep conversations for 1 to 3650 days, or leave it empty to keep them forever.",
    )


def _hidden_words(value: Any, _brand: Brand) -> list[str]:
    """Trimmed, blanks dropped, and each word once whatever its case (the first spelling kept)."""
    if isinstance(value, str):
        value = value.splitlines()
    if not isinstance(value, Iterable) or any(not isinstance(word, str) for word in value):
        raise InvalidField("hidden_words", "Hidden words are a list of words or phrases.")
    words: list[str] = []
    seen: set[str] = set()
    for word in (w.strip() for w in value):
        if not word or word.casefold() in seen:
            continue
        if "\x00" in word:
            raise InvalidField("hidden_words", UNSTORABLE)
        if len(word) > MAX_HIDDEN_WORD_LENGTH:
            raise InvalidField(
                "hidden_words",
                f"“{word[:30]}…” is too long: a hidden word or phrase has at most "
                f"{MAX_HIDDEN_WORD_LENGTH} characters.",
            )
        seen.add(word.casefold())
        words.append(word)
    if len(words) > MAX_HIDDEN_WORDS:
        raise InvalidField(
            "hidden_words", f"Use at most {MAX_HIDDEN_WORDS} hidden words (this has {len(words)})."
        )
    return words


def _csat_question(value: Any, _brand: Brand) -> str:
    return _text(value, "csat_question", 300, "Write the question the survey asks.")


def _csat_delay(value: Any, _brand: Brand) -> int:
    return _whole(
        value,
        "csat_delay_minutes",
        0,
        10080,
        "The survey delay is a whole number of minutes from 0 to 10080 (one week).",
    )


CLEANERS: dict[str, Callable[[Any, Brand], Any]] = {
    "name": _name,
    "timezone": _timezone,
    "reopen_days": _reopen_days,
    "followers_are_known": lambda value, _brand: _yes_no(value, "followers_are_known"),
    "accept_all_requests": lambda value, _brand: _yes_no(value, "accept_all_requests"),
    "hidden_words": _hidden_words,
    "retention_days": _retention_days,
    "csat_enabled": lambda value, _brand: _yes_no(value, "csat_enabled"),
    "csat_question": _csat_question,
    "csat_delay_minutes": _csat_delay,
}


def _cleaned(brand: Brand, changes: Mapping[str, Any]) -> dict[str, Any]:
    """Every value checked; one refusal naming every field that is wrong."""
    values: dict[str, Any] = {}
    refusal: InvalidField | None = None
    for name, value in changes.items():
        try:
            values[name] = CLEANERS[name](value, brand)
        except InvalidField as wrong:
            if refusal is None:
                refusal = wrong
            else:
                refusal.fields.update(wrong.fields)
    if refusal is not None:
        raise refusal
    return values


def _follow_time_zone(brand: Brand, actor: Actor | Agent | None, now: datetime) -> None:
    """Stored business hours keep their times of day in the brand's new zone, changed the way
    the business-hours setting changes them (every open SLA clock moves, and it is audited)."""
    stored = db.session.scalar(
        select(BusinessHours.calendar).where(BusinessHours.brand_id == brand.id)
    )
    if stored is None or stored.get("timezone") == brand.timezone:
        return  # none stored: open around the clock in the brand's zone, no due time moves
    set_calendar(brand, actor, {**stored, "timezone": brand.timezone}, now)


def update_brand(
    brand: Brand,
    actor: Actor | Agent | None,
    changes: Mapping[str, Any],
    now: datetime | None = None,
) -> Brand:
    """Apply the given fields (others stay as they are) and record what changed."""
    unknown = sorted(set(changes) - set(FIELDS))
    if unknown:
        raise ValidationError(f"These are not brand settings: {', '.join(unknown)}.")
    needs = Role.ADMIN if set(changes) - set(CSAT_FIELDS) else Role.MANAGER
    what = "changing the brand's settings" if needs is Role.ADMIN else "changing the survey"
    as_actor(actor, brand.id).require(needs, what, brand_id=brand.id)
    values = _cleaned(brand, changes)
    before = snapshot(brand, FIELDS)
    for name, value in values.items():
        setattr(brand, name, value)
    changed = diff(before, snapshot(brand, FIELDS))
    if not changed:
        return brand
    if "timezone" in changed:
        _follow_time_zone(brand, actor, now or utcnow())
    db.session.flush()
    record(actor, brand.id, "brand.updated", "brand", brand.id, changed, label=brand.name)
    return brand


def to_dict(brand: Brand) -> dict[str, Any]:
    """The API's shape of the settings."""
    return {
        "name": brand.name,
        "timezone": brand.timezone,
        "reopen_days": brand.reopen_days,
        "requests": {
            "known_followers": brand.followers_are_known,
            "accept_all": brand.accept_all_requests,
            "hidden_words": list(brand.hidden_words or []),
        },
        "csat": {
            "enabled": brand.csat_enabled,
            "question": brand.csat_question,
            "delay_minutes": brand.csat_delay_minutes,
        },
        "retention_days": brand.retention_days,
    }
