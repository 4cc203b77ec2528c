"""The password policy: one check wherever a password is set (the command line, an invitation,
a reset, the API), so that no way in accepts what another refuses."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from helpdesk.errors import InvalidField

MIN_LENGTH = 10
MAX_LENGTH = 200


@cache
def common_passwords() -> frozenset[str]:
    """The shipped list, lower case: read once per process."""
    text = files("helpdesk.accounts").joinpath("common_passwords.txt").read_text("utf-8")
    lines = (line.strip().lower() for line in text.splitlines())
    return frozenset(line for line in lines if line and not line.startswith("#"))


def check_password(password: str) -> None:
    """Refuse a password anyone could guess: too short, too long to hash cheaply, or one of the
    passwords tried first by whoever guesses (compared without regard to case)."""
    if len(password) < MIN_LENGTH:
        raise InvalidField("password", f"Use at least {MIN_LENGTH} characters.")
    if len(password) > MAX_LENGTH:
        raise InvalidField("password", f"Use at most {MAX_LENGTH} characters.")
    if not password.strip():
        raise InvalidField("password", "A password of spaces alone is too easy to guess.")
    if password.strip().lower() in common_passwords():
        raise InvalidField("password", "This is one of the most common passwords: choose another.")
