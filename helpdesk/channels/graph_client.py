"""Instagram's login and Graph endpoints as the connection calls them: one request, its JSON
read so that account ids stay exact, and every failure turned into words for the admin.

Meta answers the code exchange with `{error_type, code, error_message}` and the Graph API with
`{"error": {message, type, code}}`; both become a `GraphError` whose message says what happened.
"""

from __future__ import annotations

import decimal
import json
import re
from typing import Any

import httpx
from flask import current_app

VERSION_SEGMENT = re.compile(r"/v\d+(\.\d+)?/?$")


class GraphError(Exception):
    """Instagram refused a call, or could not be reached; `message` is for the admin."""

    def __init__(self, message: str, code: int | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


def graph_base() -> str:
    return current_app.config["GRAPH_API_BASE"].rstrip("/")


def graph_origin() -> str:
    """GRAPH_API_BASE without its version segment: the token endpoints are not versioned."""
    return VERSION_SEGMENT.sub("", graph_base())


def parse(text: str) -> Any:
    """JSON whose numbers never pass through a float: an account id beyond 2**53 stays exact
    even if a proxy on the way wrote it as `1.7841400000000000123e19`."""
    return json.loads(text, parse_float=decimal.Decimal)


def account_id(value: Any) -> str | None:
    """An id as the digits Instagram meant, whether it came as a number or a string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, decimal.Decimal) and value == value.to_integral_value():
        return str(int(value))
    if isinstance(value, str) and value.strip().isdigit():
        return value.strip()
    return None


def call(
    method: str,
    url: str,
    *,
    params: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    token: str | None = None,
    what: str = "Instagram",
) -> dict:
    """One call; the answer's JSON object, or a GraphError in words (`what` names the step).
    A `token` goes in the Authorization header, out of URLs."""
    timeout = float(current_app.config.get("GRAPH_API_TIMEOUT", 10))
    headers = {"Authorization": f"Bearer {token}"} if token else None
    try:
        response = httpx.request(
            method, url, params=params, data=form, headers=headers, timeout=timeout
        )
    except httpx.TimeoutException:
        raise GraphError(f"{what}: Instagram did not answer in time. Try again.") from None
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise GraphError(
            f"{what}: Instagram could not be reached ({type(exc).__name__}). Try again."
        ) from None
    try:
        answer = parse(response.text)
    except ValueError:
        answer = None
    if response.is_success and isinstance(answer, dict):
        return answer
    if response.is_success:
        raise GraphError(
            f"{what}: Instagram's answer could not be read.", status=response.status_code
        )
    raise _refusal(what, response.status_code, answer)


def _refusal(what: str, status: int, answer: Any) -> GraphError:
    """Either of Meta's error shapes, in words."""
    body = answer if isinstance(answer, dict) else {}
    error = body.get("error") if isinstance(body.get("error"), dict) else body
    message = error.get("error_message") or error.get("message") or error.get("error_description")
    code = _int(error.get("code"))
    if not message:
        return GraphError(f"{what}: Instagram refused it (HTTP {status}).", code, status)
    return GraphError(f"{what}: Instagram said “{message}”.", code, status)


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError, decimal.InvalidOperation):
        return None
