"""One error shape for the whole API: `{"error": {"code": "snake_case", "message": "..."}}`.

Domain errors keep their own code and status; HTTP errors (validation, bad JSON, size, routing)
get a code from their status. A refused request is rolled back, so it changes nothing.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Response, jsonify, request
from sqlalchemy.exc import DataError, IntegrityError
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect

from helpdesk import transaction
from helpdesk.errors import DomainError, InvalidField  # noqa: F401 (re-exported for the views)

CODES_BY_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "too_many_requests",
    500: "internal_error",
}
MESSAGES_BY_STATUS = {
    404: "no such resource",
    405: "this method is not allowed here",
    413: "the request body is too large",
    500: "something went wrong on our side",
}


def error_response(
    status: int, code: str, message: str, fields: dict[str, Any] | None = None
) -> tuple[Response, int]:
    body: dict[str, Any] = {"code": code, "message": message}
    if fields:
        body["fields"] = fields
    return jsonify(error=body), status


def _flatten(messages: Any) -> dict[str, Any]:
    """webargs nests messages by location (`json`, `query`); clients only need the field names."""
    if not isinstance(messages, dict):
        return {"_schema": messages}
    flat: dict[str, Any] = {}
    for location, errors in messages.items():
        if isinstance(errors, dict):
            flat.update(errors)
        else:
            flat[location] = errors
    return flat


def _problems(errors: Any, path: str = "") -> list[str]:
    """Nested messages as `attachments.0.url: Not a valid URL.`, one per field."""
    if isinstance(errors, dict):
        return [
            line
            for name, inner in errors.items()
            for line in _problems(inner, f"{path}.{name}" if path else str(name))
        ]
    if isinstance(errors, list) and errors and not isinstance(errors[0], str):
        return [line for inner in errors for line in _problems(inner, path)]
    text = errors[0] if isinstance(errors, list) and errors else errors
    return [f"{path}: {text}" if path else str(text)]


def _summary(fields: dict[str, Any]) -> str:
    parts = _problems(fields)
    return "invalid input: " + "; ".join(parts) if parts else "invalid input"


def handle_http_exception(exc: HTTPException) -> tuple[Response, int]:
    """Werkzeug and webargs errors in our shape; 405 keeps its Allow header."""
    transaction.rollback()
    status = exc.code or 500
    data = getattr(exc, "data", None) or {}
    if isinstance(data.get("exc"), json.JSONDecodeError | UnicodeDecodeError) or data.get(
        "bad_json"
    ):
        response = error_response(400, "bad_json", data.get("message") or "the body is not JSON")
    elif status == 422:
        fields = _flatten(data.get("messages") or data.get("errors") or {})
        response = error_response(422, "invalid", _summary(fields), fields)
    else:
        message = MESSAGES_BY_STATUS.get(status) or exc.description or exc.name
        response = error_response(status, CODES_BY_STATUS.get(status, "error"), message)
    body, code = response
    for name, value in (data.get("headers") or {}).items():
        body.headers[name] = value
    allowed = getattr(exc, "valid_methods", None)  # a MethodNotAllowed's
    if status == 405 and allowed:
        body.headers["Allow"] = ", ".join(allowed)
    return body, code


def handle_domain_error(exc: DomainError) -> tuple[Response, int]:
    transaction.rollback()
    return error_response(exc.status, exc.code, exc.message, getattr(exc, "fields", None))


def handle_data_error(_exc: DataError) -> tuple[Response, int]:
    """A value the database cannot store that the schemas let through: still the caller's."""
    transaction.rollback()
    return error_response(422, "invalid", "a value cannot be stored (out of range or malformed)")


def handle_integrity_error(_exc: IntegrityError) -> tuple[Response, int]:
    """A unique or foreign key that another request just took: a conflict, never a 500."""
    transaction.rollback()
    return error_response(409, "conflict", "the change conflicts with data stored meanwhile")


def answer_api_routing_errors() -> tuple[Response, int] | None:
    """Unknown paths and wrong methods under /api/ answer JSON, whatever the app does elsewhere.

    Runs before every request of the app: a route that did not match belongs to no blueprint,
    so no blueprint error handler would see it.
    """
    exc = request.routing_exception
    if exc is None or isinstance(exc, RequestRedirect) or not isinstance(exc, HTTPException):
        return None
    if request.path != "/api" and not request.path.startswith("/api/"):
        return None
    return handle_http_exception(exc)
