"""Meta's `signed_request`: how the deauthorize and data-deletion callbacks prove they come
from Meta. The form field is `b64url(signature).b64url(json)`, the signature being HMAC-SHA256
of the second segment, as sent, keyed with the app secret; base64url without padding."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any

ALGORITHM = "HMAC-SHA256"
# A real one is a few hundred characters; anything far longer is not Meta's.
MAX_LENGTH = 8192
_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=")


class BadSignedRequest(ValueError):
    """Missing, malformed or not signed with our app secret: the callback is refused."""


def _b64url_decode(segment: str) -> bytes:
    if not segment or any(c not in _B64URL for c in segment):
        raise BadSignedRequest("the signed request is not base64url")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as exc:
        raise BadSignedRequest("the signed request is not base64url") from exc


def parse(signed_request: str | None, secret: str) -> dict[str, Any]:
    """The payload of a request signed with `secret`, or BadSignedRequest. The signature is
    compared in constant time; `user_id` comes back as text whatever JSON type it was sent as,
    since Instagram ids can exceed 2^53 and must stay exact."""
    if not secret:
        raise BadSignedRequest("no app secret is configured")
    if not signed_request or len(signed_request) > MAX_LENGTH:
        raise BadSignedRequest("signed_request is missing")
    signature_text, dot, payload_text = signed_request.strip().partition(".")
    if not dot or "." in payload_text:
        raise BadSignedRequest("signed_request must be two segments joined by a dot")
    signature = _b64url_decode(signature_text)
    raw_payload = _b64url_decode(payload_text)
    expected = hmac.new(secret.encode(), payload_text.encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(signature, expected):
        raise BadSignedRequest("the signature does not match")
    try:
        # Integers are kept as their digits, so a 2^53+ id is not rounded on its way.
        payload = json.loads(raw_payload.decode("utf-8"), parse_int=str, parse_float=str)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadSignedRequest("the payload is not JSON") from exc
    if not isinstance(payload, dict):
        raise BadSignedRequest("the payload is not a JSON object")
    algorithm = payload.get("algorithm")
    if algorithm is not None and str(algorithm).upper() != ALGORITHM:
        raise BadSignedRequest(f"the algorithm must be {ALGORITHM}")
    user_id = payload.get("user_id")
    if not isinstance(user_id, str) or not user_id.strip() or len(user_id) > 64:
        raise BadSignedRequest("the payload names no user_id")
    payload["user_id"] = user_id.strip()
    return payload


def sign(payload: dict[str, Any], secret: str) -> str:
    """A signed request as Meta builds one: for the simulator and the tests."""
    body = _b64url_encode(json.dumps(payload, separators=(",", ":")).encode())
    signature = hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()
    return f"{_b64url_encode(signature)}.{body}"


def _b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
