"""What every request pays before and after its view, kept small.

(The webhook's POST goes further and is answered before Flask: `helpdesk.web.webhooks.routes`.)

A signed webhook delivery or a /ping does none of what a console page needs: no cookie session,
no signed-in agent. Measured under gunicorn with keep-alive connections, the per-request work
of Flask's defaults and of the app's hooks cost more than the webhook's own (signature, JSON,
the hand-off to the writer thread), so:

- requests to the session-less paths below open no session (no cookie is read, nothing is
  signed) and never save one, and Flask-Login takes them as anonymous without asking its user
  loader (see `helpdesk.web.auth`);
- the session's signing serializer is built once per key, not once per request;
- whether a hook or view is a coroutine is decided once per function, not once per call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask, Request, Response
from flask import request as current_request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface, SessionMixin
from itsdangerous import URLSafeTimedSerializer

# Machine-to-machine paths that authenticate otherwise (a signature) or not at all: no session.
SESSIONLESS_PATHS = frozenset({"/ping", "/healthz", "/readyz", "/metrics"})
SESSIONLESS_PREFIXES = ("/webhooks/",)


def is_sessionless(path: str) -> bool:
    return path in SESSIONLESS_PATHS or path.startswith(SESSIONLESS_PREFIXES)


class LeanSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, unchanged for the console; nothing at all for the
    session-less paths (an empty session that is never saved, so a stray write sets no cookie)."""

    def __init__(self) -> None:
        self._serializers: dict[tuple, URLSafeTimedSerializer] = {}

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        """Flask builds a serializer (and its signers) on every request; the keys decide it, so
        one per set of keys does (a changed key or fallback list gets its own)."""
        if not app.secret_key:
            return None
        key = (app.secret_key, tuple(app.config["SECRET_KEY_FALLBACKS"] or ()))
        serializer = self._serializers.get(key)
        if serializer is None:
            serializer = super().get_signing_serializer(app)
            if serializer is not None:
                self._serializers[key] = serializer
        return serializer

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if is_sessionless(request.path):
            return self.session_class()
        return super().open_session(app, request)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        if is_sessionless(current_request.path):
            return
        super().save_session(app, session, response)


class HelpdeskFlask(Flask):
    """Flask with a cached coroutine check for hooks and views (`init_auth` installs the lean
    session interface, on any Flask app)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._synced: dict[Callable[..., Any], Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Flask asks `inspect.iscoroutinefunction` for every hook and view of every request;
        the answer for a given function never changes."""
        try:
            return self._synced[func]
        except KeyError:
            synced = self._synced[func] = super().ensure_sync(func)
            return synced
        except TypeError:  # an unhashable callable: ask every time, as Flask does
            return super().ensure_sync(func)
