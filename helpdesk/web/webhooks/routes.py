"""Meta's Instagram webhook: verify, store, answer; processing happens after the answer."""

from __future__ import annotations

import hashlib
import hmac
import json

from flask import current_app, g, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from helpdesk.intake import service as intake
from helpdesk.intake.writer import DeliveryNotStored
from helpdesk.queueing import wake_intake
from helpdesk.web.webhooks import bp


def _error(status: int, code: str, message: str):
    return jsonify(error={"code": code, "message": message}), status


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
    return _error(403, "forbidden", "verify token does not match")


def signature_is_valid(raw: bytes, header: str | None, secret: str) -> bool:
    """HMAC-SHA256 over the exact bytes received, compared in constant time."""
    if not header or not secret or not header.startswith("sha256="):
        return False
    expected = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header.removeprefix("sha256=").strip().lower())


def read_body(limit: int | None) -> bytes:
    """The raw body, or RequestEntityTooLarge past `limit` bytes. Werkzeug refuses a long
    Content-Length up front, but it silently cuts a chunked body (no Content-Length) at the
    limit, which then failed the signature as a 401; so a chunked body is read here from the
    server's own stream, one byte past the limit."""
    environ = request.environ
    length = request.content_length
    if length is not None and limit is not None and "wsgi.input_terminated" in environ:
        # The usual case: the server (gunicorn) ends the stream at Content-Length, so the body
        # is one read, without Werkzeug's stream wrappers around it.
        if length > limit:
            raise RequestEntityTooLarge()
        return environ["wsgi.input"].read(length)
    if limit is None or length is not None:
        return request.get_data(cache=False)
    if "wsgi.input_terminated" not in environ:  # the server cannot end a chunked stream
        return request.get_data(cache=False)
    stream, raw = environ["wsgi.input"], bytearray()
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


@bp.post("/instagram")
def receive():
    try:
        raw = read_body(request.max_content_length)
    except RequestEntityTooLarge:
        return _error(413, "too_large", "a delivery is at most 1 MiB")
    if not signature_is_valid(
        raw, request.headers.get("X-Hub-Signature-256"), current_app.config["INSTAGRAM_APP_SECRET"]
    ):
        return _error(401, "bad_signature", "X-Hub-Signature-256 is missing or wrong")
    try:
        text = raw.decode("utf-8")
        body = parse_json(text)
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: nested too deep
        return _error(400, "bad_json", "the body is not JSON")
    if not isinstance(body, dict | list):
        return _error(400, "bad_json", "the body is not a JSON object or list")
    try:
        intake.store_delivery(text, body, request_id=g.get("request_id"))
    except DeliveryNotStored:
        return _error(503, "unavailable", "the delivery could not be stored; retry later")
    wake_intake()  # with the broker down the delivery stays pending and beat's sweep takes it
    return "EVENT_RECEIVED", 200, {"Content-Type": "text/plain"}
