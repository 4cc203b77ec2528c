"""Driving the console as a browser does: sign in through the form, post with the CSRF token."""

from __future__ import annotations

import re

from werkzeug.datastructures import ImmutableMultiDict

from tests.factories import PASSWORD

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
META_CSRF_RE = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


def csrf_token(client, path: str = "/login") -> str:
    html = client.get(path).get_data(as_text=True)
    match = CSRF_RE.search(html) or META_CSRF_RE.search(html)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def login(client, email: str, password: str = PASSWORD, remember: bool = False, **kw):
    """Sign in as a browser does: fetch the form, take its CSRF token, post it."""
    data = {"email": email, "password": password, "csrf_token": csrf_token(client)}
    if remember:
        data["remember"] = "on"
    return client.post("/login", data=data, **kw)


def signed_in(client, agent, **kw):
    response = login(client, agent.email, **kw)
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    return client


def post(client, path: str, data: dict | None = None, **kw):
    """POST a console form with the session's CSRF token (read from the inbox page)."""
    token = csrf_token(client, "/inbox")
    return client.post(path, data={"csrf_token": token, **(data or {})}, **kw)


class RecordingArgs(ImmutableMultiDict):
    """Query (and form) values that remember which names a view asked for."""

    asked: set[str] = set()

    def get(self, key, default=None, type=None):  # noqa: A002 - werkzeug's signature
        RecordingArgs.asked.add(key)
        return super().get(key, default, type)

    def getlist(self, key, type=None):  # noqa: A002
        RecordingArgs.asked.add(key)
        return super().getlist(key, type)

    def __getitem__(self, key):
        RecordingArgs.asked.add(key)
        return super().__getitem__(key)

    def __contains__(self, key):
        RecordingArgs.asked.add(key)
        return super().__contains__(key)
