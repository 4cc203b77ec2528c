"""Meta's Instagram webhook: verify, store, answer; processing happens after the answer.

A delivery is the request the app answers most often, and its own work is small: check the
signature, parse, hand the body to the writer (`helpdesk.intake.writer`), wait for the commit.
Under load most of its time went to Flask around it: the request context, URL routing, the
console's hooks (session, sign-in, CSRF), response objects; and while a thread waits for the
commit every other thread of the process contends for the interpreter lock, so each of those
microseconds is paid again in waiting. So `WebhookIntake`, a WSGI middleware in front of the
app, answers `POST /webhooks/instagram` itself. It keeps what every request owes: the request
id (`X-Request-Id`, given or new), the request metrics, the security headers, JSON errors. The
Flask route stays the rule's home (URL building, the access matrix, 405 answers to other
methods) and answers through the same `receive_delivery`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from http import HTTPStatus
from typing import Any, NamedTuple

from flask import Flask, Response, current_app, g, has_app_context, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wsgi import get_content_length

from helpdesk.intake import service as intake
from helpdesk.intake.writer import DeliveryNotStored
from helpdesk.observability import count_request, request_id_of, request_id_var
from helpdesk.queueing import wake_intake
from helpdesk.web.security_headers import HEADERS
from helpdesk.web.webhooks import bp

log = logging.getLogger(__name__)
PATH = "/webhooks/instagram"
ENDPOINT = "webhooks.receive"  # the metrics' label, as Flask names the route


class Answer(NamedTuple):
    status: int
    body: bytes
    content_type: str


RECEIVED = Answer(200, b"EVENT_RECEIVED", "text/plain")


def _error(status: int, code: str, message: str) -> Answer:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    return Answer(status, body, "application/json")


@bp.get("/instagram")
def verify_subscription():
    expected = current_app.config["INSTAGRAM_VERIFY_TOKEN"]
    given = request.args.get("hub.verify_token", "")
    if (
        request.args.get("hub.mode") == "subscribe"
        and expected
        and hmac.compare_digest(given.encode(), expected.encode())
    ):
        return request.args.get("hub.challenge", ""), 200, {"Content-Type": "text/plain"}
    return _flask_response(_error(403, "forbidden", "verify token does not match"))


def signature_is_valid(raw: bytes, header: str | None, secret: str) -> bool:
    """HMAC-SHA256 over the exact bytes received, compared in constant time."""
    if not header or not secret or not header.startswith("sha256="):
        return False
    expected = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header.removeprefix("sha256=").strip().lower())


def read_body(environ: dict[str, Any], limit: int | None) -> bytes:
    """The raw body, or RequestEntityTooLarge past `limit` bytes. A long Content-Length is
    refused before reading; a chunked body (no Content-Length) is read from the server's stream
    one byte past the limit, where Werkzeug would silently cut it at the limit (which then
    failed the signature as a 401). A body of unknown length on a server that cannot end the
    stream is empty, as Werkzeug takes it."""
    stream = environ["wsgi.input"]
    length = get_content_length(environ)
    if length is not None:
        if limit is not None and length > limit:
            raise RequestEntityTooLarge()
        return stream.read(length)  # the usual case: one read, no stream wrappers
    if not environ.get("wsgi.input_terminated"):
        return b""
    if limit is None:
        return stream.read()
    raw = bytearray()
    while chunk := stream.read(min(64 * 1024, limit + 1 - len(raw))):
        raw += chunk
        if len(raw) > limit:
            raise RequestEntityTooLarge()
    return bytes(raw)


def _no_constants(name: str) -> None:
    """JSON has no NaN or Infinity; Python's parser takes them unless told otherwise."""
    raise ValueError(f"{name} is not JSON")


# Built once: json.loads with any option builds a new decoder (and scanner) on every call.
_DECODER = json.JSONDecoder(parse_constant=_no_constants)


def parse_json(text: str) -> object:
    return _DECODER.decode(text)


def _app_context(app: Flask) -> AbstractContextManager[Any]:
    """The app's context for the store: the one already pushed if it is this app's (as Flask
    reuses it for a request: tests and scripts share its database session), else a new one."""
    if has_app_context() and current_app._get_current_object() is app:  # type: ignore[attr-defined]
        return nullcontext()
    return app.app_context()


def receive_delivery(app: Flask, environ: dict[str, Any], request_id: str | None) -> Answer:
    """Verify, store, answer: 200 only once the delivery's row is committed."""
    try:
        raw = read_body(environ, app.config["MAX_CONTENT_LENGTH"])
    except RequestEntityTooLarge:
        return _error(413, "too_large", "a delivery is at most 1 MiB")
    if not signature_is_valid(
        raw, environ.get("HTTP_X_HUB_SIGNATURE_256"), app.config["INSTAGRAM_APP_SECRET"]
    ):
        return _error(401, "bad_signature", "X-Hub-Signature-256 is missing or wrong")
    try:
        text = raw.decode("utf-8")
        body = parse_json(text)
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: nested too deep
        return _error(400, "bad_json", "the body is not JSON")
    if not isinstance(body, dict | list):
        return _error(400, "bad_json", "the body is not a JSON object or list")
    with _app_context(app):
        try:
            intake.store_delivery(text, body, request_id=request_id)
        except DeliveryNotStored:
            return _error(503, "unavailable", "the delivery could not be stored; retry later")
        wake_intake()  # with the broker down the delivery stays pending and beat's sweep takes it
    return RECEIVED


def _flask_response(answer: Answer) -> Response:
    return Response(answer.body, answer.status, content_type=answer.content_type)


@bp.post("/instagram")
def receive() -> Response:
    """Reached only where `WebhookIntake` is not in front of the app."""
    return _flask_response(
        receive_delivery(current_app._get_current_object(), request.environ, g.get("request_id"))  # type: ignore[attr-defined]
    )


StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
_STATUS_LINES = {status.value: f"{status.value} {status.phrase}" for status in HTTPStatus}


class WebhookIntake:
    """WSGI middleware: `POST /webhooks/instagram` answered here, every other request by the
    app behind it."""

    def __init__(self, app: Flask, wsgi_app: WsgiApp) -> None:
        self.app = app
        self.wsgi_app = wsgi_app
        self.headers = list(HEADERS.items())

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PATH or environ.get("REQUEST_METHOD") != "POST":
            return self.wsgi_app(environ, start_response)
        started = time.perf_counter()
        request_id = request_id_of(environ)
        token = request_id_var.set(request_id)  # for the log lines of this delivery
        try:
            answer = receive_delivery(self.app, environ, request_id)
        except Exception:  # answered as Flask would: logged, and a JSON 500
            log.exception("webhook delivery failed")
            answer = _error(500, "internal_error", "the delivery could not be taken")
        finally:
            request_id_var.reset(token)
        count_request("POST", ENDPOINT, answer.status, time.perf_counter() - started)
        start_response(
            _STATUS_LINES[answer.status],
            [
                ("Content-Type", answer.content_type),
                ("Content-Length", str(len(answer.body))),
                ("X-Request-Id", request_id),
                *self.headers,
            ],
        )
        return [answer.body]


def init_webhook_intake(app: Flask) -> None:
    """In front of every other middleware: a delivery needs none of them (ProxyFix's client
    address is for sign-in throttling)."""
    app.wsgi_app = WebhookIntake(app, app.wsgi_app)  # type: ignore[method-assign]
