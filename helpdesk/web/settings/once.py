"""A secret shown once on the page after the redirect that follows its creation.

It rides in the session, encrypted (the session is a signed cookie, readable by whoever holds
it), never in a URL, and the first page that reads it removes it: a reload shows nothing.
"""

from __future__ import annotations

from flask import session

from helpdesk.crypto import decrypt, encrypt

PREFIX = "shown_once:"


def keep(kind: str, secret: str) -> None:
    session[PREFIX + kind] = encrypt(secret)


def take(kind: str) -> str | None:
    """The secret kept for this kind of thing, once; None afterwards."""
    stored = session.pop(PREFIX + kind, None)
    if not isinstance(stored, str):
        return None
    try:
        return decrypt(stored)
    except ValueError:  # the key was rotated meanwhile: the secret is lost, as it would be
        return None
