"""Instagram Login as the simulator plays it: the authorize page, the code exchange, the
long-lived token and its refresh, `/me`, and the webhook subscription (`subscribed_apps`).

Meta's real answers, not its documentation's: the code exchange answers flat (a switch answers
inside `{"data": [...]}` as documented), `user_id` is a JSON number beyond 2**53, a used code is
refused in the token endpoint's own error shape, and an unknown `subscribed_fields` is a Graph
error 100. `/_sim/oauth` steers it: which account signs in, the answer shape, a subscription
that does not succeed, and errors on demand per endpoint.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from html import escape
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Flask, current_app, jsonify, redirect, request

SCOPES = ("instagram_business_basic", "instagram_business_manage_messages")
LONG_LIVED_SECONDS = 5184000  # 60 days
SHORT_LIVED_SECONDS = 3600
SUBSCRIBABLE_FIELDS = frozenset(
    {
        "comments",
        "live_comments",
        "mentions",
        "message_edit",
        "message_reactions",
        "messages",
        "messaging_handover",
        "messaging_optins",
        "messaging_postbacks",
        "messaging_referral",
        "messaging_seen",
        "standby",
        "story_insights",
    }
)
ENDPOINTS = ("oauth_token", "exchange_token", "refresh_token", "me", "subscribed_apps")
DEFAULT_ACCOUNTS = (
    {
        "user_id": "17841400000000000123",
        "id": "8011000000000123",
        "username": "sim_business",
        "name": "Sim Business",
        "account_type": "BUSINESS",
    },
    {
        "user_id": "17841400000000000456",
        "id": "8011000000000456",
        "username": "sim_outlet",
        "name": "Sim Outlet",
        "account_type": "BUSINESS",
    },
)

control = Blueprint("sim_oauth", __name__, url_prefix="/_sim/oauth")


@dataclass
class LoginState:
    """Accounts that can sign in, codes and tokens handed out, subscriptions, switches."""

    accounts: dict[str, dict] = field(default_factory=dict)
    account: str = DEFAULT_ACCOUNTS[0]["user_id"]  # who signs in unless the page says otherwise
    wrapped: bool = False  # answer the code exchange inside {"data": [...]}
    subscribe_succeeds: bool = True
    codes: dict[str, dict] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)  # token -> user_id
    subscriptions: dict[str, list[str]] = field(default_factory=dict)
    failures: dict[str, list[dict]] = field(default_factory=dict)  # endpoint -> queued errors
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if not self.accounts:
            self.accounts = {a["user_id"]: dict(a) for a in DEFAULT_ACCOUNTS}

    def reset(self) -> None:
        with self.lock:
            fresh = LoginState()
            for name in ("accounts", "account", "wrapped", "subscribe_succeeds", "codes"):
                setattr(self, name, getattr(fresh, name))
            self.tokens.clear()
            self.subscriptions.clear()
            self.failures.clear()

    def issue(self, user_id: str, prefix: str) -> str:
        token = f"{prefix}{secrets.token_urlsafe(24)}"
        with self.lock:
            self.tokens[token] = user_id
        return token

    def take_failure(self, endpoint: str) -> dict | None:
        with self.lock:
            queue = self.failures.get(endpoint) or []
            if not queue:
                return None
            failure = queue[0]
            if failure.get("times") is not None:
                failure["times"] -= 1
                if failure["times"] <= 0:
                    queue.pop(0)
            return failure


def _login() -> LoginState:
    return current_app.extensions["graphsim_oauth"]


def _record(endpoint: str) -> dict:
    """The request as the other endpoints record it, secrets and codes left out."""
    from devtools.graphsim.server import _recorded

    state = current_app.extensions["graphsim"]
    entry = _recorded(endpoint, None, b"")
    hidden = ("access_token", "client_secret", "code")
    entry["args"] = {k: ("<redacted>" if k in hidden else v) for k, v in request.args.items()}
    entry["form"] = {k: ("<redacted>" if k in hidden else v) for k, v in request.form.items()}
    entry["raw"] = None
    return state.record(entry)


def _answer(entry: dict, payload: dict, status: int = 200):
    entry["status"] = status
    entry["response"] = payload
    return jsonify(payload), status


def _graph_error(entry: dict, code: int, message: str | None = None, subcode: int | None = None):
    from devtools.graphsim.server import MetaError

    error = MetaError(code, message, subcode)
    return _answer(entry, error.body(), error.status)


def _injected(entry: dict, endpoint: str):
    """An error a test asked for; None when there is none."""
    failure = _login().take_failure(endpoint)
    if failure is None:
        return None
    if endpoint == "oauth_token":
        body = {
            "error_type": failure.get("type") or "OAuthException",
            "code": failure.get("code") or 400,
            "error_message": failure.get("message") or "Simulated error",
        }
        return _answer(entry, body, int(failure.get("status") or 400))
    return _graph_error(entry, int(failure["code"]), failure.get("message"), failure.get("subcode"))


def _token_user(entry: dict) -> tuple[str | None, Any]:
    """The account a token belongs to; a token the simulator never issued (a test's channel)
    acts for the default account, as the Send API accepts any token."""
    from devtools.graphsim.server import _token

    token = _token()
    if token is None:
        return None, _graph_error(entry, 190, "An active access token must be used")
    login = _login()
    with login.lock:
        return login.tokens.get(token, login.account), None


# --- the authorize page -------------------------------------------------------------------------

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Instagram (simulated)</title></head>
<body>
<h1>Allow DM Helpdesk to manage this account's messages?</h1>
<p>App {client_id} asks for: {scopes}.</p>
<form method="post" action="/oauth/authorize">
{hidden}
<label for="account">Signed in to Instagram as</label>
<select id="account" name="account">{options}</select>
<button type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form>
</body></html>
"""


def authorize_page():
    args = request.args
    if not args.get("redirect_uri") or args.get("response_type") != "code":
        return "redirect_uri and response_type=code are required", 400
    login = _login()
    chosen = args.get("account") or login.account
    with login.lock:
        accounts = list(login.accounts.values())
    options = "".join(
        f'<option value="{escape(a["user_id"])}"{" selected" if a["user_id"] == chosen else ""}>'
        f"@{escape(a['username'])} ({escape(a['name'])})</option>"
        for a in accounts
    )
    keep = ("client_id", "redirect_uri", "scope", "state", "response_type")
    hidden = "\n".join(
        f'<input type="hidden" name="{name}" value="{escape(args.get(name, ""))}">' for name in keep
    )
    return PAGE.format(
        client_id=escape(args.get("client_id", "")),
        scopes=escape(args.get("scope", "")),
        hidden=hidden,
        options=options,
    )


def authorize_decision():
    """Allow or Deny: back to the app's redirect_uri as Instagram does (`#_` after a code)."""
    form = request.values
    redirect_uri = form.get("redirect_uri", "")
    if not redirect_uri:
        return "redirect_uri is required", 400
    login = _login()
    state = form.get("state", "")
    if form.get("decision", "allow") != "allow":
        query = {
            "error": "access_denied",
            "error_reason": "user_denied",
            "error_description": "The user denied your request.",
            "state": state,
        }
        return redirect(f"{redirect_uri}?{urlencode(query)}", code=302)
    user_id = form.get("account") or login.account
    if user_id not in login.accounts:
        return f"no simulated account {escape(user_id)}", 400
    code = "AQ" + secrets.token_urlsafe(48)
    with login.lock:
        login.codes[code] = {
            "user_id": user_id,
            "redirect_uri": redirect_uri,
            "client_id": form.get("client_id", ""),
            "used": False,
        }
    return redirect(f"{redirect_uri}?{urlencode({'code': code, 'state': state})}#_", code=302)


# --- tokens ---------------------------------------------------------------------------------------


def _oauth_error(entry: dict, message: str, status: int = 400):
    body = {"error_type": "OAuthException", "code": status, "error_message": message}
    return _answer(entry, body, status)


def _spend_code(form: Any) -> tuple[str, dict | None]:
    """The grant a code stands for, spent; or why there is none (in Meta's words)."""
    for name in ("client_id", "client_secret", "grant_type", "redirect_uri", "code"):
        if not form.get(name):
            return f"Missing parameter: {name}", None
    if form["grant_type"] != "authorization_code":
        return "Unsupported grant_type", None
    login = _login()
    with login.lock:
        grant = login.codes.get(form["code"])
        if grant is None:
            return "Invalid authorization code", None
        if grant["used"]:
            return "This authorization code has been used", None
        grant["used"] = True
    if grant["redirect_uri"] != form["redirect_uri"]:
        return (
            "Error validating verification code. Please make sure your redirect_uri is "
            "identical to the one you used in the OAuth dialog request"
        ), None
    return "", grant


def exchange_code():
    """POST /oauth/access_token: a code, once, for a short-lived token."""
    entry = _record("oauth_token")
    injected = _injected(entry, "oauth_token")
    if injected is not None:
        return injected
    problem, grant = _spend_code(request.form)
    if grant is None:
        return _oauth_error(entry, problem)
    login = _login()
    token = login.issue(grant["user_id"], "IGQVJshort")
    answer: dict[str, Any] = {"access_token": token, "user_id": int(grant["user_id"])}
    if login.wrapped:
        answer["permissions"] = ",".join(SCOPES)
        return _answer(entry, {"data": [answer]})
    answer["permissions"] = list(SCOPES)
    return _answer(entry, answer)


def long_lived_token():
    """GET /access_token?grant_type=ig_exchange_token: the 60-day token."""
    entry = _record("exchange_token")
    injected = _injected(entry, "exchange_token")
    if injected is not None:
        return injected
    if request.args.get("grant_type") != "ig_exchange_token":
        return _graph_error(entry, 100, "(#100) grant_type must be ig_exchange_token")
    if not request.args.get("client_secret"):
        return _graph_error(entry, 100, "(#100) Missing client_secret")
    user_id, refused = _token_user(entry)
    if refused is not None:
        return refused
    token = _login().issue(user_id or "", "IGQVJlong")
    return _answer(
        entry, {"access_token": token, "token_type": "bearer", "expires_in": LONG_LIVED_SECONDS}
    )


def refresh_token():
    """GET /refresh_access_token?grant_type=ig_refresh_token: a new 60-day token."""
    entry = _record("refresh_token")
    injected = _injected(entry, "refresh_token")
    if injected is not None:
        return injected
    if request.args.get("grant_type") != "ig_refresh_token":
        return _graph_error(entry, 100, "(#100) grant_type must be ig_refresh_token")
    user_id, refused = _token_user(entry)
    if refused is not None:
        return refused
    token = _login().issue(user_id or "", "IGQVJrefreshed")
    return _answer(
        entry, {"access_token": token, "token_type": "bearer", "expires_in": LONG_LIVED_SECONDS}
    )


# --- the account and its subscription -------------------------------------------------------------


def me(version: str):
    entry = _record("me")
    injected = _injected(entry, "me")
    if injected is not None:
        return injected
    user_id, refused = _token_user(entry)
    if refused is not None:
        return refused
    login = _login()
    with login.lock:
        account = dict(login.accounts.get(user_id or "", {"user_id": user_id}))
    account.setdefault("profile_picture_url", f"https://graph-sim.invalid/pic/{user_id}.jpg")
    wanted = [f for f in request.args.get("fields", "user_id,username").split(",") if f]
    return _answer(
        entry, {f: account[f] for f in wanted if f in account} | {"id": account.get("id", user_id)}
    )


def subscribed_apps(version: str, user_id: str):
    entry = _record("subscribed_apps")
    injected = _injected(entry, "subscribed_apps")
    if injected is not None:
        return injected
    _, refused = _token_user(entry)
    if refused is not None:
        return refused
    login = _login()
    if request.method == "DELETE":
        with login.lock:
            login.subscriptions.pop(user_id, None)
        return _answer(entry, {"success": True})
    if request.method == "GET":
        with login.lock:
            fields = login.subscriptions.get(user_id)
        data = [] if fields is None else [{"subscribed_fields": fields}]
        return _answer(entry, {"data": data})
    raw = request.values.get("subscribed_fields", "")
    fields = [f.strip() for f in raw.split(",") if f.strip()]
    unknown = [f for f in fields if f not in SUBSCRIBABLE_FIELDS]
    if not fields or unknown:
        got = unknown[0] if unknown else raw
        allowed = ", ".join(sorted(SUBSCRIBABLE_FIELDS))
        return _graph_error(
            entry, 100, f'(#100) Param subscribed_fields must be one of {{{allowed}}} - got "{got}"'
        )
    if not login.subscribe_succeeds:
        return _answer(entry, {"success": False})
    with login.lock:
        login.subscriptions[user_id] = fields
    return _answer(entry, {"success": True})


# --- /_sim/oauth ----------------------------------------------------------------------------------


@control.get("")
def show():
    login = _login()
    with login.lock:
        return {
            "accounts": list(login.accounts.values()),
            "account": login.account,
            "wrapped": login.wrapped,
            "subscribe_succeeds": login.subscribe_succeeds,
            "subscriptions": dict(login.subscriptions),
            "codes_issued": len(login.codes),
        }


@control.post("")
def steer():
    """`{account?, add_account?: {user_id, username, name}, wrapped?, subscribe_succeeds?}`"""
    login = _login()
    data = request.get_json(silent=True) or {}
    added = data.get("add_account")
    if added is not None:
        if not isinstance(added, dict) or not str(added.get("user_id", "")).isdigit():
            return {"error": "add_account needs a numeric user_id"}, 400
        user_id = str(added["user_id"])
        with login.lock:
            login.accounts[user_id] = {
                "user_id": user_id,
                "id": str(added.get("id") or f"80{user_id[-14:]}"),
                "username": str(added.get("username") or f"sim_{user_id[-4:]}"),
                "name": str(added.get("name") or f"Sim Account {user_id[-4:]}"),
                "account_type": str(added.get("account_type") or "BUSINESS"),
            }
    if "account" in data:
        if str(data["account"]) not in login.accounts:
            return {"error": "no such simulated account"}, 400
        login.account = str(data["account"])
    if "wrapped" in data:
        login.wrapped = bool(data["wrapped"])
    if "subscribe_succeeds" in data:
        login.subscribe_succeeds = bool(data["subscribe_succeeds"])
    return show()


@control.post("/errors")
def add_failure():
    """`{endpoint, code, message?, subcode?, status?, times?}`: the next calls fail."""
    data = request.get_json(silent=True) or {}
    endpoint = data.get("endpoint")
    if endpoint not in ENDPOINTS:
        return {"error": f"endpoint is one of {', '.join(ENDPOINTS)}"}, 400
    try:
        failure = {
            "code": int(data.get("code", 190)),
            "message": data.get("message"),
            "subcode": None if data.get("subcode") is None else int(data["subcode"]),
            "status": None if data.get("status") is None else int(data["status"]),
            "times": None if data.get("times", 1) is None else int(data.get("times", 1)),
        }
    except (TypeError, ValueError):
        return {"error": "code, subcode, status and times are integers"}, 400
    login = _login()
    with login.lock:
        login.failures.setdefault(endpoint, []).append(failure)
    return {"failure": {"endpoint": endpoint, **failure}}, 201


@control.post("/reset")
def reset():
    _login().reset()
    return {"ok": True}


def register(app: Flask) -> None:
    """Add this module's routes to a simulator app."""
    app.extensions["graphsim_oauth"] = LoginState()
    app.add_url_rule("/oauth/authorize", "oauth_authorize", authorize_page, methods=["GET"])
    app.add_url_rule("/oauth/authorize", "oauth_decide", authorize_decision, methods=["POST"])
    app.add_url_rule("/oauth/access_token", "oauth_token", exchange_code, methods=["POST"])
    app.add_url_rule("/access_token", "exchange_token", long_lived_token, methods=["GET"])
    app.add_url_rule("/refresh_access_token", "refresh_token", refresh_token, methods=["GET"])
    app.add_url_rule("/<path:version>/me", "me", me, methods=["GET"])
    app.add_url_rule(
        "/<path:version>/<user_id>/subscribed_apps",
        "subscribed_apps",
        subscribed_apps,
        methods=["GET", "POST", "DELETE"],
    )
    app.register_blueprint(control)

    @app.before_request
    def _reset_with_the_rest() -> None:
        """`POST /_sim/reset` forgets the logins too."""
        if request.method == "POST" and request.path == "/_sim/reset":
            app.extensions["graphsim_oauth"].reset()
