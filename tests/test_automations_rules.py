"""Automation rules through the API (API.md "Automations and CSAT"): the body's shape, every
field, operator and action checked with the path of the refusal, ids of the token's brand only,
manager or admin tokens, and a refused body changing nothing."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from helpdesk.accounts.models import Role
from helpdesk.accounts.service import add_team_member, create_team
from helpdesk.audit.models import AuditEvent
from helpdesk.automations import rules
from helpdesk.automations.engine import ACTIONS, FIELD_OPS, FIELDS, OPS
from helpdesk.automations.models import AutomationRule
from helpdesk.canned import service as canned
from helpdesk.errors import InvalidField
from helpdesk.extensions import db
from helpdesk.tickets import tags
from tests.conftest import table_counts
from tests.helpers.api import Client, Desk, error_of, make_desk, token_for


@pytest.fixture
def desk() -> Desk:
    return make_desk("acme")


@pytest.fixture
def other() -> Desk:
    return make_desk("rival")


@pytest.fixture
def api(client, desk) -> Client:
    return Client(client, token_for(desk.brand, Role.MANAGER))


class Objects:
    """One object of each kind a rule names, for a brand."""

    def __init__(self, desk: Desk):
        self.team = create_team(desk.brand, f"{desk.brand.slug} team")
        add_team_member(self.team, desk.agent)
        self.tag = tags.create_tag(desk.brand, None, f"{desk.brand.slug}-vip")
        self.reply = canned.create(desk.brand, None, "away", "Away", "We are closed.", shared=True)
        self.personal = canned.create(desk.brand, desk.agent, "mine", "Mine", "Mine", shared=False)
        self.agent = desk.agent
        self.channel = desk.channel
        db.session.commit()


@pytest.fixture
def mine(desk) -> Objects:
    return Objects(desk)


@pytest.fixture
def theirs(other) -> Objects:
    return Objects(other)


def away_body(reply_id: int, **more: Any) -> dict[str, Any]:
    return {
        "name": "Away",
        "trigger": {"event": "message_received"},
        "conditions": [{"field": "business_hours", "op": "eq", "value": "closed"}],
        "actions": [{"type": "send_canned_reply", "value": reply_id}],
        "once_per_ticket": True,
        **more,
    }


def refused(response, path: str) -> str:
    assert response.status_code == 422, response.get_json()
    error = error_of(response)
    assert path in error["fields"], error
    return error["fields"][path][0]


# Creating, reading, changing, deleting ------------------------------------------------------------


def test_create_list_patch_and_delete_a_rule(api, desk, mine):
    response = api.post("/automations", json=away_body(mine.reply.id))
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert created["trigger"] == {"event": "message_received"}
    assert created["enabled"] is True and created["once_per_ticket"] is True
    assert created["position"] == 0
    second = api.post(
        "/automations", json=away_body(mine.reply.id, name="Second", enabled=False)
    ).get_json()
    assert second["position"] == 1 and second["enabled"] is False

    listed = api.get("/automations").get_json()
    assert [item["name"] for item in listed["items"]] == ["Away", "Second"]
    assert listed["next_cursor"] is None

    patched = api.patch(
        f"/automations/{second['id']}",
        json={
            "position": 0,
            "trigger": {"event": "ticket_idle", "idle_minutes": 30, "idle_status": "open"},
        },
    ).get_json()
    assert patched["trigger"] == {"event": "ticket_idle", "idle_minutes": 30, "idle_status": "open"}
    assert patched["name"] == "Second" and patched["actions"] == created["actions"]
    assert api.get(f"/automations/{second['id']}").get_json() == patched

    assert api.delete(f"/automations/{created['id']}").status_code == 204
    assert db.session.get(AutomationRule, created["id"]) is None
    actions = set(db.session.scalars(select(AuditEvent.action)))
    assert {"automation.created", "automation.updated", "automation.deleted"} <= actions


def test_a_list_is_paged_in_running_order(api, desk, mine):
    for n in range(3):
        api.post("/automations", json=away_body(mine.reply.id, name=f"R{n}", position=3 - n))
    first = api.get("/automations?limit=2").get_json()
    assert [item["name"] for item in first["items"]] == ["R2", "R1"]
    rest = api.get(f"/automations?limit=2&cursor={first['next_cursor']}").get_json()
    assert [item["name"] for item in rest["items"]] == ["R0"]


def test_a_tag_is_named_by_id_or_by_name_in_any_case(api, mine):
    body = away_body(
        mine.reply.id,
        conditions=[
            {"field": "tag", "op": "contains", "value": mine.tag.name.upper()},
            {"field": "tag", "op": "in", "value": [mine.tag.id]},
        ],
        actions=[{"type": "add_tag", "value": mine.tag.id}],
    )
    created = api.post("/automations", json=body).get_json()
    assert created["conditions"][0]["value"] == mine.tag.name
    assert created["conditions"][1]["value"] == [mine.tag.id]


# Every field, operator and action -----------------------------------------------------------------


def good_values(mine: Objects) -> dict[str, Any]:
    """A valid value of each condition kind (engine.FIELDS)."""
    return {
        "text": "refund",
        "folder": "primary",
        "channel": mine.channel.id,
        "tag": mine.tag.id,
        "priority": "high",
        "status": "open",
        "agent": mine.agent.id,
        "team": mine.team.id,
        "open_closed": "closed",
        "bool": True,
    }


def good_action_values(mine: Objects) -> dict[str, Any]:
    return {
        "team": mine.team.id,
        "agent": mine.agent.id,
        "tag": mine.tag.name,
        "priority": "urgent",
        "status": "resolved",
        "minutes": 60,
        "canned_reply": mine.reply.id,
        "text": "Looked at by the robot",
        "recipient": f"team:{mine.team.id}",
    }


def test_every_field_takes_each_of_its_operators_and_refuses_the_others(api, mine):
    values = good_values(mine)
    for field, kind in FIELDS.items():
        for op in OPS:
            value = values[kind]
            condition = {
                "field": field,
                "op": op,
                "value": [value] if op in ("in", "not_in") else value,
            }
            response = api.post(
                "/automations", json=away_body(mine.reply.id, conditions=[condition])
            )
            if op in FIELD_OPS[field]:
                assert response.status_code == 201, (field, op, response.get_json())
                assert response.get_json()["conditions"] == [condition]
            else:
                refused(response, "conditions[0].op")


def test_every_action_takes_its_value(api, mine):
    values = good_action_values(mine)
    for action, kind in ACTIONS.items():
        response = api.post(
            "/automations",
            json=away_body(mine.reply.id, actions=[{"type": action, "value": values[kind]}]),
        )
        assert response.status_code == 201, (action, response.get_json())
        assert response.get_json()["actions"] == [{"type": action, "value": values[kind]}]


BAD_CONDITION_VALUES = {
    "text": ["", 5, "x" * 501, "nul\x00"],
    "folder": ["inbox", 1],
    "channel": ["1", 0, 2**40],
    "tag": ["no such tag", 999999],
    "priority": ["highest", None],
    "status": ["gone"],
    "agent": [999999, "me"],
    "team": [999999, True],
    "open_closed": ["maybe", True],
    "bool": ["yes", 1, None],
}
BAD_ACTION_VALUES = {
    "team": [None, 999999],
    "agent": [None, 999999],
    "tag": ["never made", None],
    "priority": ["p1"],
    "status": ["snoozed", "nope"],
    "minutes": [0, -5, 1.5, "60", 60 * 24 * 31],
    "canned_reply": [None, 999999],
    "text": ["", "   ", "x" * 5001],
    "recipient": ["team", "agent:abc", "group:1", 5, "team:999999"],
}


def test_bad_values_are_refused_with_the_path_of_the_value(api, mine):
    before = table_counts()
    for field, kind in FIELDS.items():
        for value in BAD_CONDITION_VALUES[kind]:
            condition = {"field": field, "op": FIELD_OPS[field][0], "value": value}
            conditions = [{"field": "text", "op": "contains", "value": "ok"}, condition]
            response = api.post(
                "/automations", json=away_body(mine.reply.id, conditions=conditions)
            )
            refused(response, "conditions[1].value")
    for action, kind in ACTIONS.items():
        for value in BAD_ACTION_VALUES[kind]:
            actions = [{"type": "add_note", "value": "ok"}, {"type": action, "value": value}]
            response = api.post("/automations", json=away_body(mine.reply.id, actions=actions))
            refused(response, "actions[1].value")
    assert table_counts() == before


def test_list_operators_check_each_item(api, mine):
    condition = {"field": "priority", "op": "in", "value": ["high", "p0"]}
    refused(
        api.post("/automations", json=away_body(mine.reply.id, conditions=[condition])),
        "conditions[0].value[1]",
    )
    condition = {"field": "priority", "op": "not_in", "value": []}
    refused(
        api.post("/automations", json=away_body(mine.reply.id, conditions=[condition])),
        "conditions[0].value",
    )
    condition = {"field": "priority", "op": "in", "value": "high"}
    refused(
        api.post("/automations", json=away_body(mine.reply.id, conditions=[condition])),
        "conditions[0].value",
    )


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 121}, "name"),
        ({"enabled": "yes"}, "enabled"),
        ({"once_per_ticket": 1}, "once_per_ticket"),
        ({"position": -1}, "position"),
        ({"trigger": {"event": "whenever"}}, "trigger.event"),
        ({"trigger": {"event": "ticket_idle", "idle_status": "open"}}, "trigger.idle_minutes"),
        (
            {"trigger": {"event": "ticket_idle", "idle_minutes": 0, "idle_status": "open"}},
            "trigger.idle_minutes",
        ),
        (
            {"trigger": {"event": "ticket_idle", "idle_minutes": 5, "idle_status": "snoozed"}},
            "trigger.idle_status",
        ),
        ({"trigger": {"event": "message_received", "idle_minutes": 5}}, "trigger.idle_minutes"),
        ({"trigger": {"event": "ticket_created", "mood": "x"}}, "trigger.mood"),
        ({"conditions": [{"field": "colour", "op": "eq", "value": "red"}]}, "conditions[0].field"),
        ({"conditions": [{"field": "text", "op": "like", "value": "x"}]}, "conditions[0].op"),
        ({"conditions": [{"field": "text", "op": "eq"}]}, "conditions[0].value"),
        (
            {"conditions": [{"field": "text", "op": "eq", "value": "x", "also": 1}]},
            "conditions[0].also",
        ),
        ({"conditions": [{"field": "text", "op": "eq", "value": "x"}] * 21}, "conditions"),
        ({"actions": []}, "actions"),
        ({"actions": [{"type": "explode", "value": 1}]}, "actions[0].type"),
        ({"actions": [{"type": "add_note", "value": "x"}] * 11}, "actions"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_a_refused_body_names_the_field_and_changes_nothing(api, mine, change, path):
    before = table_counts()
    response = api.post("/automations", json={**away_body(mine.reply.id), **change})
    assert response.status_code == 422, response.get_json()
    assert path in error_of(response)["fields"], error_of(response)
    assert table_counts() == before


def test_a_refused_patch_changes_nothing(api, mine):
    created = api.post("/automations", json=away_body(mine.reply.id)).get_json()
    response = api.patch(
        f"/automations/{created['id']}",
        json={"name": "Renamed", "actions": [{"type": "set_status", "value": "gone"}]},
    )
    refused(response, "actions[0].value")
    db.session.rollback()
    assert api.get(f"/automations/{created['id']}").get_json() == created


# Brands and roles ---------------------------------------------------------------------------------


def test_another_brands_ids_in_a_rule_are_refused(api, mine, theirs):
    before = table_counts()
    cases = [
        ("conditions", {"field": "channel_id", "op": "eq", "value": theirs.channel.id}),
        ("conditions", {"field": "tag", "op": "contains", "value": theirs.tag.id}),
        ("conditions", {"field": "tag", "op": "contains", "value": theirs.tag.name}),
        ("conditions", {"field": "assignee_id", "op": "eq", "value": theirs.agent.id}),
        ("conditions", {"field": "team_id", "op": "in", "value": [theirs.team.id]}),
        ("actions", {"type": "assign_team", "value": theirs.team.id}),
        ("actions", {"type": "assign_agent", "value": theirs.agent.id}),
        ("actions", {"type": "add_tag", "value": theirs.tag.id}),
        ("actions", {"type": "send_canned_reply", "value": theirs.reply.id}),
        ("actions", {"type": "notify", "value": f"agent:{theirs.agent.id}"}),
        ("actions", {"type": "notify", "value": f"team:{theirs.team.id}"}),
    ]
    for key, item in cases:
        response = api.post("/automations", json=away_body(mine.reply.id, **{key: [item]}))
        assert response.status_code == 422, (item, response.get_json())
        assert any(name.startswith(f"{key}[0].value") for name in error_of(response)["fields"])
    assert table_counts() == before


def test_a_personal_canned_reply_is_not_for_rules(api, mine):
    response = api.post("/automations", json=away_body(mine.personal.id))
    refused(response, "actions[0].value")


def test_another_brands_rule_is_not_found(client, api, mine, other, theirs):
    rule = rules.create_rule(other.brand, None, away_body(theirs.reply.id))
    db.session.commit()
    before = table_counts()
    assert api.get(f"/automations/{rule.id}").status_code == 404
    assert api.patch(f"/automations/{rule.id}", json={"name": "Mine"}).status_code == 404
    assert api.delete(f"/automations/{rule.id}").status_code == 404
    assert api.get("/automations").get_json()["items"] == []
    assert table_counts() == before


@pytest.mark.parametrize("role", [Role.AGENT])
def test_an_agent_token_may_neither_read_nor_change_rules(client, desk, mine, role):
    rule = rules.create_rule(desk.brand, None, away_body(mine.reply.id))
    db.session.commit()
    agent = Client(client, token_for(desk.brand, role))
    before = table_counts()
    assert agent.get("/automations").status_code == 403
    assert agent.get(f"/automations/{rule.id}").status_code == 403
    assert agent.post("/automations", json=away_body(mine.reply.id)).status_code == 403
    assert agent.patch(f"/automations/{rule.id}", json={"enabled": False}).status_code == 403
    assert agent.delete(f"/automations/{rule.id}").status_code == 403
    assert table_counts() == before


def test_an_admin_token_may_change_rules(client, desk, mine):
    admin = Client(client, token_for(desk.brand, Role.ADMIN))
    assert admin.post("/automations", json=away_body(mine.reply.id)).status_code == 201


# The service: order and templates -----------------------------------------------------------------


def test_moving_a_rule_swaps_it_with_its_neighbour(desk, mine):
    made = [
        rules.create_rule(desk.brand, None, away_body(mine.reply.id, name=n, position=0))
        for n in ("a", "b", "c")
    ]
    assert rules.move_rule(made[2], None, up=True)
    assert [rule.name for rule in rules.list_rules(desk.brand.id)] == ["a", "c", "b"]
    assert not rules.move_rule(made[0], None, up=True)
    assert rules.move_rule(made[0], None, up=False)
    assert [rule.name for rule in rules.list_rules(desk.brand.id)] == ["c", "a", "b"]


def test_every_template_saves_once_its_blanks_are_picked(desk, mine):
    picks = {"send_canned_reply": mine.reply.id, "notify": f"team:{mine.team.id}"}
    for key in rules.TEMPLATES:
        body = rules.from_template(key)
        for action in body["actions"]:
            if action["value"] is None:
                action["value"] = picks[action["type"]]
        rule = rules.create_rule(desk.brand, None, body, template=key)
        assert rule.template == key
    away = rules.from_template("away_message")
    assert away["trigger"] == {"event": "message_received"}
    assert away["conditions"] == [{"field": "business_hours", "op": "eq", "value": "closed"}]
    assert away["actions"] == [{"type": "send_canned_reply", "value": None}]
    assert away["once_per_ticket"] is True


def test_a_template_left_blank_is_refused(desk):
    with pytest.raises(InvalidField) as refusal:
        rules.create_rule(desk.brand, None, rules.from_template("away_message"))
    assert "actions[0].value" in refusal.value.fields
