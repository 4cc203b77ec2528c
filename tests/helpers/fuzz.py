"""Schemathesis cases over the served OpenAPI document, pointed at a seeded brand's real ids."""

from __future__ import annotations

from typing import Any

import schemathesis

BODY_IDS = {  # body fields naming a row, and the path parameter whose row they should name
    "conversation_id": "conversation_id",
    "reply_to": "message_id",
    "canned_reply": "reply_id",
    "assignee_id": "agent_id",
    "channel_id": "channel_id",
}


def with_real_ids(case: Any, ids: dict[str, Any]) -> Any:
    """Point the ids a generated body names at the brand's rows, so the services run."""
    if isinstance(case.body, dict):
        for field, kind in BODY_IDS.items():
            if isinstance(case.body.get(field), int) and not isinstance(case.body[field], bool):
                case.body[field] = ids[kind]
    return case


def api_operations(app) -> list[Any]:
    """Every operation of the served OpenAPI document, with no security parameters generated."""
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    schema.config.generation.update(with_security_parameters=False)
    return [result.ok() for result in schema.get_all_operations()]


def real_id_cases(operation: Any, ids: dict[str, Any], **options: Any) -> Any:
    """Cases of `operation` whose path and body ids name the brand's rows."""
    names = {p.name for p in operation.path_parameters}
    real = {name: value for name, value in ids.items() if name in names}
    return operation.as_strategy(path_parameters=real, **options).map(
        lambda case: with_real_ids(case, ids)
    )
