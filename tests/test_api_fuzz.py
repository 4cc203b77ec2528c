"""Schemathesis drives every operation of the served OpenAPI document against the app in-process
(WSGI), with an admin token and seeded data: bad input must always get a 4xx in the API's error
shape, never a 5xx. Three passes per operation: valid input with the brand's real ids (so bodies
reach the services), valid input with arbitrary ids, and invalid input. Bounded and
derandomized, so a run is repeatable and stays well under two minutes on two cores."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode

from tests.helpers.fuzz import api_operations, real_id_cases

pytestmark = pytest.mark.slow  # every API operation fuzzed: about 30 s

MAX_EXAMPLES = 20
FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=timedelta(seconds=5),
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


def test_no_input_makes_a_server_error(app, seeded):
    headers = {"Authorization": f"Bearer {seeded['token']}"}
    operations = api_operations(app)
    operations.sort(key=lambda operation: operation.method.upper() == "DELETE")  # rows stay longer
    assert len(operations) >= 25
    failures: list[str] = []

    def check(case: Any) -> None:
        response = case.call(headers=headers)
        problem = None
        if response.status_code >= 500:
            problem = "server error"
        elif response.status_code >= 400:
            error = response.json().get("error") if response.text else None
            if not (isinstance(error, dict) and error.get("code") and error.get("message")):
                problem = "error without the API's error shape"
        if problem:
            failures.append(
                f"{problem}: {case.method} {case.formatted_path} query={case.query!r} "
                f"body={case.body!r} -> {response.status_code} {response.text[:300]}"
            )
            raise AssertionError(failures[-1])

    for operation in operations:
        strategies = [
            real_id_cases(operation, seeded["ids"]),
            operation.as_strategy(),
            operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
        ]
        for strategy in strategies:
            try:
                FUZZ_SETTINGS(given(case=strategy)(check))()
            except AssertionError:
                pass  # recorded; go on fuzzing the other operations
            except Unsatisfiable:
                pass  # nothing invalid to send: an operation without parameters or body
    assert not failures, "\n".join(dict.fromkeys(failures))
