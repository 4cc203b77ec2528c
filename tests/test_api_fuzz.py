"""Schemathesis drives every operation of the served OpenAPI document against the app in-process
(WSGI), with an admin token and seeded data: bad input must always get a 4xx in the API's error
shape, never a 5xx. Three passes per operation: valid input with the brand's real ids (so bodies
reach the services), valid input with arbitrary ids, and invalid input. Bounded and
derandomized, so a run is repeatable and stays well under two minutes on two cores."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode

from helpdesk.accounts.models import Role
from helpdesk.canned import service as canned
from helpdesk.channels.models import ChannelKind
from helpdesk.extensions import db
from helpdesk.outgoing import service as outgoing
from helpdesk.sla import service as sla
from helpdesk.tickets import tags
from tests.conftest import drain_broker
from tests.factories import ChannelFactory, ContactFactory
from tests.test_api import make_desk, token_for, write

MAX_EXAMPLES = 20
FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=timedelta(seconds=5),
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
BODY_IDS = {  # body fields naming a row, and the path parameter whose row they should name
    "conversation_id": "conversation_id",
    "reply_to": "message_id",
    "canned_reply": "reply_id",
    "assignee_id": "agent_id",
    "channel_id": "channel_id",
}


@pytest.fixture
def seeded(app, monkeypatch) -> Iterator[dict[str, Any]]:
    """A brand with a few rows of every kind, another brand, and the first brand's admin token."""
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        """Webhook hosts resolve to a public address without any DNS; the rest (the broker's
        address) as usual: the patch is on the socket module every library shares."""
        if isinstance(host, str) and host.endswith(".example.test"):
            return [(2, 1, 6, "", ("93.184.216.34", port))]
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    desk = make_desk("fuzz")
    ChannelFactory(brand=desk.brand, kind=ChannelKind.API, account_id="api-fuzz-2")
    ContactFactory(channel=desk.channel, platform_id="fuzz-2", followed_by_brand=True)
    for n in range(3):
        write(desk.channel, f"fuzz-more-{n}", "fuzz-known", minutes_ago=4 - n)
        write(desk.channel, f"fuzz-req-{n}", f"stranger-{n}", minutes_ago=3)
    write(desk.channel, "fuzz-other-1", "fuzz-2", minutes_ago=60 * 24 * 2)
    tags.add_tag(desk.ticket, "vip", None)
    reply = canned.create(
        desk.brand, None, "hello", "Hello", "Hi {{ contact.username }}", shared=True
    )
    policy = sla.create_policy(desk.brand, None, "default", 0, {}, {"first_response_min": 30})
    subscription, _ = outgoing.create_subscription(
        desk.brand, None, "https://hooks.example.test/in", ["ticket.created"]
    )
    db.session.commit()
    make_desk("elsewhere")  # another brand, whose ids must answer 404 and nothing else
    drain_broker(app)
    yield {
        "token": token_for(desk.brand, Role.ADMIN),
        "ids": {
            "conversation_id": desk.conversation.id,
            "message_id": desk.message.id,
            "ticket_id": desk.ticket.id,
            "reply_id": reply.id,
            "policy_id": policy.id,
            "agent_id": desk.agent.id,
            "subscription_id": subscription.id,
            "channel_id": desk.api_channel.id,
            "name": "vip",
        },
    }
    drain_broker(app)  # replies and reactions the fuzz queued for delivery: no worker runs here


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
