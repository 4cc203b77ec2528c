"""Console sign-in: Flask-Login sessions, CSRF on every form, and the login and logout pages.

`init_auth` runs in the app factory before the blueprints are registered, so that blueprints
can find the CSRF extension (the API exempts its own) and the console can rely on `current_user`.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

from flask import Blueprint, Flask, abort, current_app, g, jsonify, redirect, request, url_for
from flask_login import UserMixin
from werkzeug.middleware.proxy_fix import ProxyFix

from helpdesk.accounts.models import Agent
from helpdesk.accounts.service import get_agent
from helpdesk.extensions import csrf, login_manager
from helpdesk.web.request_path import LeanSessionInterface, is_sessionless

bp = Blueprint("auth", __name__)

# Paths that authenticate otherwise (tokens, signatures): never checked for a CSRF token.
# Meta's deauthorize and data-deletion callbacks come from Meta's servers with a signed_request.
CSRF_EXEMPT_PREFIXES = (
    "/api/",
    "/webhooks/",
    "/oauth/instagram/deauthorize",
    "/oauth/instagram/data-deletion",
)
SAFE_METHODS = ("GET", "HEAD", "OPTIONS", "TRACE")
# The bodies Werkzeug parses into request.form; any other leaves it empty.
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class ConsoleUser(UserMixin):
    """The signed-in agent as Flask-Login sees it; services are given `.agent`.

    The session id carries a fingerprint of the password hash and the session epoch, so changing
    a password or signing out ends every session and every remember-me cookie of the agent,
    copies included: the cookies are signed, not stored, so only what they are checked against
    can change.
    """

    def __init__(self, agent: Agent):
        self.agent = agent
        self.id = agent.id

    @property
    def is_active(self) -> bool:
        return self.agent.active

    def get_id(self) -> str:
        return f"{self.agent.id}.{fingerprint(self.agent)}"


def fingerprint(agent: Agent) -> str:
    key = current_app.config["SECRET_KEY"].encode()
    material = agent.password_hash
    if agent.session_epoch:  # epoch 0 keeps the fingerprints issued before epochs existed
        material += f":{agent.session_epoch}"
    return hmac.new(key, material.encode(), hashlib.sha256).hexdigest()[:20]


def _load_user(user_id: str) -> ConsoleUser | None:
    agent_id, _, mark = (user_id or "").partition(".")
    if not agent_id.isdigit():
        return None
    agent = get_agent(int(agent_id))
    if agent is None or not agent.active or not hmac.compare_digest(mark, fingerprint(agent)):
        return None
    return ConsoleUser(agent)


def safe_path(target: str | None, default: str) -> str:
    """A path of this site to go to next; anything else (another host: an open redirect) falls
    back to `default`."""
    target = (target or "").strip()
    parts = urlsplit(target)
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    if parts.scheme or parts.netloc:
        return default
    return target


def wants_json() -> bool:
    view = current_app.view_functions.get(request.endpoint or "")
    return bool(getattr(view, "json_endpoint", False))


def _unauthorized():
    if wants_json():
        return jsonify(error={"code": "unauthorized", "message": "sign in first"}), 401
    target = request.full_path if request.query_string else request.path
    return redirect(url_for("auth.login", next=target))


# What Flask-Login, Flask-WTF and the console keep in `g` for one request.
REQUEST_STATE = ("_login_user", "csrf_token", "csrf_valid", "agent", "brand", "role", "brands")


def _fresh_request_state() -> None:
    """Read the user and the CSRF token from this request's session, never from an enclosing
    app context that several requests share (tests, scripts driving a test client).

    A request to a session-less path (the webhook, /ping: helpdesk.web.request_path) is
    anonymous from the start: Flask-Login never reads a session or asks its user loader."""
    state = vars(g._get_current_object())  # one proxy lookup; usually a fresh, empty `g`
    if state:
        for name in (*REQUEST_STATE, current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token")):
            state.pop(name, None)
    if is_sessionless(request.path):
        state["_login_user"] = login_manager.anonymous_user()


def _check_csrf() -> None:
    """Every state-changing request outside the token- and signature-authenticated paths carries
    the session's CSRF token; decided by path so blueprints registered elsewhere are covered."""
    if not current_app.config.get("WTF_CSRF_ENABLED", True):
        return
    if request.method in SAFE_METHODS or request.path.startswith(CSRF_EXEMPT_PREFIXES):
        return
    csrf.protect()


def _refuse_nul() -> None:
    """A NUL character in a form or query value is never typed: PostgreSQL can neither store
    nor compare it, so it is refused before any view (the API's schemas refuse it themselves)."""
    if request.path.startswith(CSRF_EXEMPT_PREFIXES):
        return
    sources = []
    if request.query_string:  # else there are no arguments: do not parse them
        sources.append(request.args)
    if request.mimetype in FORM_TYPES:  # the only bodies Werkzeug parses into request.form
        sources.append(request.form)
    for source in sources:
        if any("\x00" in value for _key, values in source.lists() for value in values):
            abort(400, description="A value contains a NUL character.")


def init_auth(app: Flask) -> None:
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)  # the token lives as long as the session
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False  # `_check_csrf` decides, by path
    csrf.init_app(app)
    app.session_interface = LeanSessionInterface()  # none at all for the webhook and /ping
    app.before_request(_fresh_request_state)
    app.before_request(_check_csrf)
    app.before_request(_refuse_nul)
    login_manager.init_app(app)
    login_manager.session_protection = app.config.get("SESSION_PROTECTION", "strong")
    login_manager.login_view = "auth.login"
    login_manager.user_loader(_load_user)
    login_manager.unauthorized_handler(_unauthorized)
    if app.config.get("PROXY_FIX_X_FOR"):
        # Behind a reverse proxy: the client address (for login throttling) is in X-Forwarded-For.
        # Wrapping wsgi_app is Flask's documented way to add middleware; mypy sees a method.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=app.config["PROXY_FIX_X_FOR"], x_proto=1, x_host=1
        )


from helpdesk.web.auth import invitations, routes  # noqa: E402,F401
