"""Settings › Automations: the list in running order, switching, moving, creating from a template,
editing with the brand's choices, deleting, and a dry run; a refused form explains itself next to
the row it is about and changes nothing; another brand's rule is a 404 and an agent a 403."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from sqlalchemy import select

from helpdesk.accounts.service import add_team_member, create_team
from helpdesk.audit.models import AuditEvent
from helpdesk.automations import engine, rules
from helpdesk.automations.models import AutomationRule
from helpdesk.canned import service as canned
from helpdesk.extensions import db
from helpdesk.tickets import tags
from helpdesk.tickets.models import Priority, Ticket
from tests.helpers.console import post, signed_in
from tests.helpers.rows import PAGE_VIEW_COLUMNS, changed, snapshot
from tests.helpers.world import World

PAGE = "/settings/automations"


@pytest.fixture
def world(app) -> World:
    return World()


@pytest.fixture
def reply(world):
    made = canned.create(world.brand, None, "away", "We are away", "Back at 9.", shared=True)
    db.session.commit()
    return made


@pytest.fixture
def manager(client, world):
    return signed_in(client, world.manager)


def rule_rows() -> list[tuple]:
    db.session.expire_all()
    query = select(AutomationRule).order_by(AutomationRule.position, AutomationRule.id)
    return [
        (r.name, r.enabled, r.position, r.event, r.conditions, r.actions, r.once_per_ticket)
        for r in db.session.scalars(query)
    ]


def make_rule(world: World, reply, **more: Any) -> AutomationRule:
    body = rules.from_template("away_message")
    body["actions"][0]["value"] = reply.id
    rule = rules.create_rule(world.brand, None, {**body, **more})
    db.session.commit()
    return rule


def shown_error(response, element_id: str) -> str:
    text = response.get_data(as_text=True)
    found = re.search(rf'id="{re.escape(element_id)}-error"[^>]*>(.*?)</p>', text)
    assert found, text[:3000]
    return html.unescape(found.group(1))


def away_form(reply_id: Any, **more: Any) -> dict[str, Any]:
    return {
        "name": "Away",
        "enabled": "1",
        "once_per_ticket": "1",
        "trigger_event": "message_received",
        "idle_minutes": "",
        "idle_status": "open",
        "condition_field": ["business_hours", ""],
        "condition_op": ["eq", "eq"],
        "condition_value": ["closed", ""],
        "action_type": ["send_canned_reply", ""],
        "action_value": [str(reply_id), ""],
        **more,
    }


# Pages --------------------------------------------------------------------------------------------


def test_the_page_lists_rules_in_running_order_with_their_templates(manager, world, reply):
    make_rule(world, reply, name="Second", position=5)
    make_rule(world, reply, name="First", position=1)
    body = manager.get(PAGE).get_data(as_text=True)
    assert body.index("1. First") < body.index("2. Second")
    assert "Business hours is Closed" in body and "send canned reply: We are away" in body
    for template in rules.TEMPLATES.values():
        assert html.escape(template.title) in body
    assert 'href="/settings/automations"' in manager.get("/settings").get_data(as_text=True)


def test_a_template_fills_the_editor_and_saving_it_makes_the_rule(manager, world, reply):
    page = manager.get(f"{PAGE}/new?template=away_message").get_data(as_text=True)
    assert 'value="Away message"' in page
    assert '<option value="business_hours" data-kind="open_closed"' in page
    assert f'<option value="{reply.id}" label="We are away">' in page  # the brand's replies
    response = post(manager, PAGE, {**away_form(reply.id), "template": "away_message"})
    assert response.status_code == 303, response.get_data(as_text=True)[:2000]
    rule = db.session.scalar(select(AutomationRule))
    assert rule.template == "away_message" and rule.once_per_ticket and rule.enabled
    assert rule.conditions == [{"field": "business_hours", "op": "eq", "value": "closed"}]
    assert rule.actions == [{"type": "send_canned_reply", "value": reply.id}]
    assert manager.get(f"{PAGE}/new?template=nothing").status_code == 404


def test_the_editor_offers_the_brands_objects_only(manager, world, reply):
    other = World("other")
    theirs = create_team(other.brand, "Their team")
    mine = create_team(world.brand, "Our team")
    tags.create_tag(other.brand, None, "their-tag")
    db.session.commit()
    page = manager.get(f"{PAGE}/new").get_data(as_text=True)
    assert "Our team" in page and f'value="{mine.id}"' in page
    assert "Their team" not in page and "their-tag" not in page
    assert f'value="team:{theirs.id}"' not in page


def test_editing_a_rule_keeps_its_rows_and_saves_changes(manager, world, reply):
    rule = make_rule(world, reply)
    team = create_team(world.brand, "Night shift")
    add_team_member(team, world.agent)
    db.session.commit()
    page = manager.get(f"{PAGE}/{rule.id}").get_data(as_text=True)
    assert 'value="closed"' in page and f'value="{reply.id}"' in page
    form = away_form(
        reply.id,
        name="Away and route",
        trigger_event="ticket_idle",
        idle_minutes="90",
        idle_status="unassigned",
        condition_field=["", "priority"],
        condition_op=["eq", "in"],
        condition_value=["", "low, normal"],
        action_type=["assign_team", "notify"],
        action_value=[str(team.id), f"team:{team.id}"],
    )
    form.pop("enabled")
    assert post(manager, f"{PAGE}/{rule.id}", form).status_code == 303
    saved = db.session.get(AutomationRule, rule.id)
    db.session.refresh(saved)
    assert (saved.name, saved.enabled, saved.event) == ("Away and route", False, "ticket_idle")
    assert (saved.idle_minutes, saved.idle_status) == (90, "unassigned")
    assert saved.conditions == [{"field": "priority", "op": "in", "value": ["low", "normal"]}]
    assert saved.actions == [
        {"type": "assign_team", "value": team.id},
        {"type": "notify", "value": f"team:{team.id}"},
    ]


def test_switching_and_moving_rules(manager, world, reply):
    first = make_rule(world, reply, name="A")
    make_rule(world, reply, name="B")
    assert post(manager, f"{PAGE}/{first.id}/toggle").status_code == 303
    assert post(manager, f"{PAGE}/{first.id}/down").status_code == 303
    assert [(name, on) for name, on, *_ in rule_rows()] == [("B", True), ("A", False)]
    assert post(manager, f"{PAGE}/{first.id}/toggle").status_code == 303
    assert rule_rows()[1][1] is True
    page = manager.get(PAGE).get_data(as_text=True)
    assert page.index("1. B") < page.index("2. A")
    db.session.expire_all()
    actions = list(db.session.scalars(select(AuditEvent.action)))
    assert actions.count("automation.updated") == 2 and "automation.moved" in actions


def test_deleting_a_rule_asks_first_then_removes_it(manager, world, reply):
    rule = make_rule(world, reply)
    page = manager.get(PAGE).get_data(as_text=True)
    assert "data-confirm=" in page and f"/settings/automations/{rule.id}/delete" in page
    assert post(manager, f"{PAGE}/{rule.id}/delete").status_code == 303
    assert rule_rows() == []


def test_a_dry_run_lists_the_open_tickets_the_rule_matches_and_changes_nothing(
    manager, world, reply
):
    ticket = db.session.get(Ticket, world.conversation.current_ticket_id)
    rule = make_rule(
        world,
        reply,
        trigger={"event": "ticket_created"},
        conditions=[{"field": "priority", "op": "eq", "value": "normal"}],
    )
    before = snapshot(PAGE_VIEW_COLUMNS)
    page = manager.get(f"{PAGE}/{rule.id}/dry-run").get_data(as_text=True)
    assert f"#{ticket.id}" in page and "1 ticket would match" in page
    assert changed(before, snapshot(PAGE_VIEW_COLUMNS)) == {}
    ticket.priority = Priority.HIGH
    db.session.commit()
    page = manager.get(f"{PAGE}/{rule.id}/dry-run").get_data(as_text=True)
    assert "0 tickets would match" in page and f"#{ticket.id}" not in page


# Refusals -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "element", "words"),
    [
        ({"name": ""}, "rule-name", "name"),
        ({"trigger_event": "sometime"}, "trigger-event", "one of"),
        ({"trigger_event": "ticket_idle", "idle_minutes": "soon"}, "idle-minutes", "whole number"),
        (
            {"condition_field": ["", "priority"], "condition_op": ["eq", "contains"]},
            "condition-1-op",
            "one of",
        ),
        (
            {"condition_field": ["", "priority"], "condition_value": ["", "p0"]},
            "condition-1-value",
            "p0",
        ),
        ({"action_value": ["999999", ""]}, "action-0-value", "canned reply"),
        ({"action_type": ["", ""]}, "actions", "from 1 to"),
    ],
)
def test_a_refused_form_shows_the_message_at_its_row_and_changes_nothing(
    manager, world, reply, change, element, words
):
    rule = make_rule(world, reply)
    before = snapshot(PAGE_VIEW_COLUMNS)
    for path in (PAGE, f"{PAGE}/{rule.id}"):
        response = post(manager, path, {**away_form(reply.id), **change})
        assert response.status_code == 422
        assert words in shown_error(response, element)
    assert changed(before, snapshot(PAGE_VIEW_COLUMNS)) == {}


def test_another_brands_canned_reply_or_team_is_refused_in_the_form(manager, world, reply):
    other = World("other")
    theirs = canned.create(other.brand, None, "x", "Theirs", "Theirs", shared=True)
    team = create_team(other.brand, "Their team")
    db.session.commit()
    before = snapshot(PAGE_VIEW_COLUMNS)
    response = post(manager, PAGE, away_form(theirs.id))
    assert response.status_code == 422 and "no shared canned reply" in shown_error(
        response, "action-0-value"
    )
    form = away_form(reply.id, action_type=["send_canned_reply", "notify"])
    form["action_value"] = [str(reply.id), f"team:{team.id}"]
    response = post(manager, PAGE, form)
    assert response.status_code == 422 and "no team" in shown_error(response, "action-1-value")
    assert changed(before, snapshot(PAGE_VIEW_COLUMNS)) == {}


def test_another_brands_rule_is_not_found_and_an_agent_is_refused(client, world, reply):
    other = World("other")
    theirs_reply = canned.create(other.brand, None, "x", "Theirs", "Theirs", shared=True)
    db.session.commit()
    theirs = make_rule(other, theirs_reply)
    mine = make_rule(world, reply)
    signed_in(client, world.admin)
    before = rule_rows()
    for path in ("", "/dry-run"):
        assert client.get(f"{PAGE}/{theirs.id}{path}").status_code == 404
    for path in ("", "/toggle", "/up", "/down", "/delete"):
        assert post(client, f"{PAGE}/{theirs.id}{path}", away_form(reply.id)).status_code == 404
    assert rule_rows() == before
    client.get("/logout")
    agent = signed_in(client.application.test_client(), world.agent)
    assert agent.get(PAGE).status_code == 403
    assert post(agent, f"{PAGE}/{mine.id}/delete").status_code == 403
    assert rule_rows() == before


# The ticket's history -----------------------------------------------------------------------------


def test_the_conversation_page_shows_each_rule_run_with_its_failures(client, world, reply):
    ticket = db.session.get(Ticket, world.conversation.current_ticket_id)
    rule = make_rule(
        world,
        reply,
        name="Tag <b>VIPs</b>",
        actions=[
            {"type": "set_priority", "value": "urgent"},
            {"type": "send_canned_reply", "value": reply.id},
        ],
    )
    db.session.delete(reply)  # the action's canned reply is gone by the time the rule runs
    db.session.flush()
    assert engine.apply(rule, ticket) is not None
    db.session.commit()
    signed_in(client, world.agent)
    page = client.get(f"/conversations/{world.conversation.id}").get_data(as_text=True)
    history = page[page.index('id="automation-history"') :][:2000]
    assert "Rule “Tag &lt;b&gt;VIPs&lt;/b&gt;” ran" in history
    # Read as people say it: what each action did, and which failed and why.
    assert "priority urgent" in history and "set_priority" not in history
    assert "Failed: Send canned reply: " in history, history


def test_the_settings_menu_marks_automations_on_a_rules_editor(manager, world, reply):
    rule = make_rule(world, reply)
    for path in (PAGE, f"{PAGE}/new", f"{PAGE}/{rule.id}"):
        page = manager.get(path).get_data(as_text=True)
        marked = re.findall(r'<a href="([^"]+)" class="active" aria-current="page">', page)
        assert marked == [PAGE], (path, marked)
