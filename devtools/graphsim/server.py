"""The simulated Graph API: Send API and profile lookups (the `/_sim` control endpoints are in
control.py, the state they steer in state.py).

Everything Meta would do that a test needs to provoke is reachable over HTTP, so the simulator
behaves the same whether it runs in a test thread, beside `make run`, or in its own process.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import Flask, current_app, jsonify, request
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from devtools.graphsim import control, fetch, history, oauth, webhooks
from devtools.graphsim.state import DEFAULT_APP_ID, PROFILE_FIELDS, EchoConfig, SimState

log = logging.getLogger(__name__)

MAX_TEXT_BYTES = 1000
ATTACHMENT_TYPES = ("image", "video", "audio", "file")
MAX_QUICK_REPLIES = 13  # Meta's limits: 13 buttons, a title of 20 characters, a payload of 1000
MAX_QUICK_REPLY_TITLE = 20
MAX_QUICK_REPLY_PAYLOAD = 1000
SENDER_ACTIONS = ("react", "unreact", "typing_on", "typing_off", "mark_seen")
WINDOW_CLOSED_MESSAGE = "This message is sent outside of allowed window."
POLL_SECONDS = 0.05  # how soon a stopped background server notices

# Meta's wording, error type and HTTP status for the codes the app has to handle.
ERRORS: dict[int, tuple[str, str, int]] = {
    1: ("An unknown error occurred", "IGApiException", 500),
    2: (
        "An unexpected error has occurred. Please retry your request later.",
        "IGApiException",
        500,
    ),
    4: ("(#4) Application request limit reached", "OAuthException", 400),
    10: (f"(#10) {WINDOW_CLOSED_MESSAGE}", "OAuthException", 400),
    17: ("(#17) User request limit reached", "OAuthException", 400),
    100: ("(#100) Invalid parameter", "OAuthException", 400),
    190: ("Error validating access token: Session has expired", "OAuthException", 401),
    200: ("(#200) Permissions error", "OAuthException", 403),
    341: ("(#341) Application limit reached", "OAuthException", 400),
    551: ("(#551) This person isn't available right now.", "IGApiException", 400),
    613: ("(#613) Calls to this api have exceeded the rate limit.", "OAuthException", 400),
}
DEFAULT_SUBCODES = {10: 2018278, 190: 463, 551: 1545041}


class MetaError(Exception):
    """An answer in Meta's error shape."""

    def __init__(
        self,
        code: int,
        message: str | None = None,
        subcode: int | None = None,
        status: int | None = None,
        type_: str | None = None,
    ):
        default_message, default_type, default_status = ERRORS.get(
            code, (f"(#{code}) Simulated error", "OAuthException", 400)
        )
        super().__init__(message or default_message)
        self.code = code
        self.message = message or default_message
        self.subcode = subcode if subcode is not None else DEFAULT_SUBCODES.get(code)
        self.status = status or default_status
        self.type = type_ or default_type

    def body(self) -> dict:
        error: dict[str, Any] = {"message": self.message, "type": self.type, "code": self.code}
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        error["fbtrace_id"] = "A" + secrets.token_urlsafe(15)
        return {"error": error}


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def _token() -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return request.args.get("access_token") or None


def _recorded(endpoint: str, body: Any, raw: bytes) -> dict:
    """The request as received, with the token reduced to a hint and a fingerprint."""
    token = _token()
    headers = {
        name: ("Bearer <redacted>" if name.lower() == "authorization" else value)
        for name, value in request.headers.items()
    }
    args = {key: ("<redacted>" if key == "access_token" else v) for key, v in request.args.items()}
    return {
        "endpoint": endpoint,
        "method": request.method,
        "path": request.path,
        "args": args,
        "headers": headers,
        "token_hint": f"...{token[-4:]}" if token else None,
        "token_sha256": hashlib.sha256(token.encode()).hexdigest()[:16] if token else None,
        "json": body,
        "raw": None if body is not None else raw.decode("utf-8", "replace"),
        "received_at": _now_iso(),
        "status": None,
        "response": None,
    }


def _answer(entry: dict, payload: dict, status: int = 200):
    entry["status"] = status
    entry["response"] = payload
    return jsonify(payload), status


def _apply_rule(state: SimState, endpoint: str, recipient_id: str | None) -> None:
    rule = state.take_rule(endpoint, recipient_id)
    if rule is None:
        return
    if rule.delay_ms:
        time.sleep(rule.delay_ms / 1000)
    if rule.code is not None:
        raise MetaError(rule.code, rule.message, rule.subcode, rule.status, rule.type)


def _invalid(message: str) -> MetaError:
    return MetaError(100, f"(#100) {message}")


def _recipient_id(body: Any) -> str | None:
    recipient = body.get("recipient") if isinstance(body, dict) else None
    if not isinstance(recipient, dict):
        return None
    value = recipient.get("id") or recipient.get("thread_key")
    return str(value) if value else None


def _validate_send(body: Any) -> str:
    """Check the body as the Send API does; returns the recipient id."""
    if not isinstance(body, dict):
        raise _invalid("The request body must be a JSON object")
    if "recipient" not in body:
        raise _invalid("The parameter recipient is required")
    recipient_id = _recipient_id(body)
    if recipient_id is None:
        raise _invalid("param recipient must contain id or thread_key")
    if "sender_action" in body:
        _validate_sender_action(body)
        return recipient_id
    message = body.get("message")
    if not isinstance(message, dict) or not message:
        raise _invalid("param message must be non-empty")
    _validate_message(message)
    _validate_tag(body)
    reply_to = body.get("reply_to", message.get("reply_to"))
    if reply_to is not None and not (isinstance(reply_to, dict) and reply_to.get("mid")):
        raise _invalid("param reply_to must be {mid}")
    return recipient_id


def _validate_message(message: dict) -> None:
    """Exactly one of text (at most MAX_TEXT_BYTES) and attachment."""
    has_text, has_attachment = "text" in message, "attachment" in message
    if has_text == has_attachment:
        raise _invalid("param message must have exactly one of text and attachment")
    if not has_text:
        _validate_attachment(message["attachment"])
        return
    text = message["text"]
    if not isinstance(text, str) or not text:
        raise _invalid("param message[text] must be a non-empty string")
    if len(text.encode()) > MAX_TEXT_BYTES:
        raise _invalid(f"param message[text] must be at most {MAX_TEXT_BYTES} bytes")
    if "quick_replies" in message:
        _validate_quick_replies(message["quick_replies"])


def _validate_quick_replies(buttons: Any) -> None:
    """Text quick replies beside a text, as the Send API takes them; recorded with the body."""
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= MAX_QUICK_REPLIES:
        raise _invalid(f"param message[quick_replies] must be a list of 1 to {MAX_QUICK_REPLIES}")
    for button in buttons:
        if not isinstance(button, dict) or button.get("content_type") != "text":
            raise _invalid("param message[quick_replies][content_type] must be text")
        title, payload = button.get("title"), button.get("payload")
        if not isinstance(title, str) or not 1 <= len(title) <= MAX_QUICK_REPLY_TITLE:
            raise _invalid(
                f"param message[quick_replies][title] has 1 to {MAX_QUICK_REPLY_TITLE} characters"
            )
        if not isinstance(payload, str) or not 1 <= len(payload) <= MAX_QUICK_REPLY_PAYLOAD:
            raise _invalid("param message[quick_replies][payload] must be a non-empty string")


def _validate_tag(body: dict) -> None:
    """A message tag is HUMAN_AGENT, and only with messaging_type MESSAGE_TAG."""
    if body.get("messaging_type") == "MESSAGE_TAG" and body.get("tag") != "HUMAN_AGENT":
        raise _invalid("param tag must be HUMAN_AGENT with messaging_type MESSAGE_TAG")
    if "tag" in body and body.get("messaging_type") != "MESSAGE_TAG":
        raise _invalid("param tag needs messaging_type MESSAGE_TAG")


def _validate_attachment(attachment: Any) -> None:
    if not isinstance(attachment, dict) or attachment.get("type") not in ATTACHMENT_TYPES:
        raise _invalid("param message[attachment][type] must be image, video, audio or file")
    payload = attachment.get("payload")
    url = payload.get("url") if isinstance(payload, dict) else None
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise _invalid("param message[attachment][payload][url] must be a URL")


def _validate_sender_action(body: dict) -> None:
    action = body["sender_action"]
    if action not in SENDER_ACTIONS:
        raise _invalid(f"param sender_action must be one of {', '.join(SENDER_ACTIONS)}")
    if action in ("react", "unreact"):
        payload = body.get("payload")
        if not isinstance(payload, dict) or not payload.get("message_id"):
            raise _invalid("param payload[message_id] is required")
        if action == "react" and not payload.get("reaction"):
            raise _invalid("param payload[reaction] is required")


def _made_up_profile(igsid: str) -> dict:
    tail = igsid[-4:] if len(igsid) >= 4 else igsid
    return {
        "id": igsid,
        "name": f"Sim Customer {tail}",
        "username": f"sim_customer_{tail}",
        "profile_pic": f"https://graph-sim.invalid/profile_pic/{igsid}.jpg",
        "is_user_follow_business": False,
        "is_business_follow_user": False,
    }


def _send_echo(state: SimState, account_id: str, body: dict, mid: str) -> None:
    """Meta echoes API sends too; the app reconciles them with the message it sent."""
    echo = state.echo
    if echo is None or not echo.enabled or "message" not in body:
        return
    message = body["message"]
    reply_to = body.get("reply_to") or message.get("reply_to")
    fields = webhooks.message_fields(
        mid,
        message.get("text"),
        [message["attachment"]] if "attachment" in message else None,
        reply_to.get("mid") if reply_to else None,
        is_echo=True,
        app_id=echo.app_id,
    )
    recipient_id = _recipient_id(body)
    payload = webhooks.envelope(
        account_id, [webhooks.event(account_id, recipient_id, message=fields)]
    )

    def post() -> None:
        if echo.delay_ms:
            time.sleep(echo.delay_ms / 1000)
        outcome: dict[str, Any] = {"mid": mid, "url": echo.url, "sent_at": _now_iso()}
        try:
            posted = webhooks.post_webhook(echo.url, echo.secret, payload)
            outcome["status"] = posted.status_code
        except Exception as exc:  # an unreachable app is reported, never fatal to the simulator
            outcome["error"] = f"{type(exc).__name__}: {exc}"
        with state.lock:
            state.echoes.append(outcome)

    threading.Thread(target=post, name="graphsim-echo", daemon=True).start()


def _fetch_attachment(state: SimState, body: Any, entry: dict) -> None:
    """Meta fetches an attachment's URL before accepting the message, and refuses it when the
    fetch fails (fetch.py; only while fetching is on)."""
    fetched = fetch.fetch_attachment(state, body)
    if fetched is None:
        return
    entry["fetched"] = fetched
    if not fetched["ok"]:
        raise MetaError(100, "(#100) Upload attachment failure.", subcode=2018047)


def _send(account_id: str):
    """The Send API: a message or a sender action, checked as Meta does, answered with its id."""
    state: SimState = current_app.extensions["graphsim"]
    raw = request.get_data()
    body = request.get_json(force=True, silent=True)
    entry = state.record(_recorded("messages", body, raw))
    entry["account_id"] = account_id
    try:
        if _token() is None:
            raise MetaError(190, "An active access token must be used", subcode=None)
        _apply_rule(state, "messages", _recipient_id(body))
        recipient_id = _validate_send(body)
        if recipient_id in state.closed_windows:
            raise MetaError(10, f"(#10) {WINDOW_CLOSED_MESSAGE}", subcode=2018278)
        _fetch_attachment(state, body, entry)
    except MetaError as exc:
        return _answer(entry, exc.body(), exc.status)
    if "sender_action" in body:
        return _answer(entry, {"recipient_id": recipient_id})
    mid = "m_sim_" + secrets.token_urlsafe(24)
    response = _answer(entry, {"recipient_id": recipient_id, "message_id": mid})
    _send_echo(state, account_id, body, mid)
    return response


def _profile(igsid: str):
    """A user profile lookup: the fields asked for, made up unless a test set them."""
    state: SimState = current_app.extensions["graphsim"]
    entry = state.record(_recorded("profile", None, b""))
    try:
        if _token() is None:
            raise MetaError(190, "An active access token must be used", subcode=None)
        _apply_rule(state, "profile", igsid)
    except MetaError as exc:
        return _answer(entry, exc.body(), exc.status)
    with state.lock:
        full = {**_made_up_profile(igsid), **state.profiles.get(igsid, {})}
    wanted = [f for f in request.args.get("fields", ",".join(PROFILE_FIELDS)).split(",") if f]
    return _answer(entry, {"id": igsid, **{f: full[f] for f in wanted if f in full}})


def _meta_error(exc: MetaError):
    return jsonify(exc.body()), exc.status


def create_simulator(
    state: SimState | None = None,
    echo_to: str | None = None,
    app_secret: str | None = None,
    app_id: str = DEFAULT_APP_ID,
    fetch_attachments: bool = False,
) -> Flask:
    """The simulator as a WSGI app; `echo_to` is the app's webhook URL (echoes need the secret);
    with `fetch_attachments` sent attachments are fetched as Meta does (fetch.py)."""
    state = state or SimState()
    state.fetch_attachments = state.fetch_attachments or fetch_attachments
    if echo_to:
        state.echo = EchoConfig(url=echo_to, secret=app_secret or "", app_id=app_id)
    app = Flask("graphsim")
    app.extensions["graphsim"] = state
    app.register_error_handler(MetaError, _meta_error)
    app.add_url_rule(
        "/<path:prefix>/<account_id>/messages",
        "send",
        lambda prefix, account_id: _send(account_id),
        methods=["POST"],
    )
    app.add_url_rule("/<account_id>/messages", "send_bare", _send, methods=["POST"])
    app.add_url_rule(
        "/<path:prefix>/<igsid>", "profile", lambda prefix, igsid: _profile(igsid), methods=["GET"]
    )
    app.add_url_rule("/<igsid>", "profile_bare", _profile, methods=["GET"])
    # Instagram Login, token life and history come before the catch-all profile rules.
    oauth.register(app)
    history.register(app)
    app.register_blueprint(control.bp)
    return app


class QuietRequestHandler(WSGIRequestHandler):
    """Tests run the simulator in-process: its access log would only bury their output."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.debug("%s %s -> %s", self.command, self.path, code)


@dataclass
class RunningServer:
    server: BaseWSGIServer
    thread: threading.Thread
    state: SimState

    @property
    def url(self) -> str:
        return f"http://{self.server.host}:{self.server.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def start_in_thread(
    host: str = "127.0.0.1",
    port: int = 0,
    echo_to: str | None = None,
    app_secret: str | None = None,
    app_id: str = DEFAULT_APP_ID,
) -> RunningServer:
    """Serve on `port` (0: a free one) from a daemon thread; threaded, so a slow answer to one
    request never holds up the others."""
    state = SimState()
    app = create_simulator(state, echo_to=echo_to, app_secret=app_secret, app_id=app_id)
    server = make_server(host, port, app, threaded=True, request_handler=QuietRequestHandler)
    thread = threading.Thread(
        target=server.serve_forever, args=(POLL_SECONDS,), name="graphsim", daemon=True
    )
    thread.start()
    return RunningServer(server, thread, state)


def serve(
    host: str = "127.0.0.1",
    port: int = 8081,
    echo_to: str | None = None,
    app_secret: str | None = None,
    app_id: str = DEFAULT_APP_ID,
) -> None:
    """Serve in the foreground until interrupted (the command line's `serve`), fetching sent
    attachments as Meta does."""
    app = create_simulator(
        echo_to=echo_to, app_secret=app_secret, app_id=app_id, fetch_attachments=True
    )
    server = make_server(host, port, app, threaded=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
