"""The `Idempotency-Key` header of the API's writes that reach a customer or a ticket.

A view asks `begin()` first: a repeat gets the first answer back as it was, and a first request
gets a claim that `answer()` completes before the view commits, so that the key, the write and
the answer are committed together or not at all.
"""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, g, request
from marshmallow import Schema

from helpdesk.idempotency.service import Answer, Claim, checked_key, claim, fingerprint
from helpdesk.web.api.auth import brand_id

HEADER = "Idempotency-Key"


def begin() -> Answer | Claim:
    """The first answer to replay, or this request's claim on its key (none without a key)."""
    raw = request.headers.get(HEADER)
    key = checked_key(raw) if raw is not None else None
    digest = fingerprint(request.method, request.path, request.get_json(silent=True))
    return claim(brand_id(), f"token:{g.api_token_id}", key, digest)


def replay(answer: Answer) -> Response:
    response = Response(answer.body, status=answer.status, mimetype="application/json")
    response.headers["Idempotent-Replayed"] = "true"
    return response


def answer(claimed: Claim, status: int, schema: type[Schema], data: Any) -> Response:
    """The view's answer, kept with the claim (call it before committing)."""
    body = current_app.json.dumps(schema().dump(data))
    claimed.record(status, body)
    return Response(body, status=status, mimetype="application/json")
