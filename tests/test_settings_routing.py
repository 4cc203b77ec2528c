"""Routing rules on the Teams page: which team a new ticket goes to, set by a manager."""

from __future__ import annotations

from sqlalchemy import select

from helpdesk.accounts.service import create_team
from helpdesk.audit.models import AuditEvent
from helpdesk.extensions import db
from helpdesk.tickets import tags
from helpdesk.tickets.models import RoutingRule, Ticket
from tests.helpers.console import post, signed_in
from tests.helpers.rows import changed, snapshot
from tests.helpers.world import World, known_contact, receive


def _rules(brand_id: int) -> list[tuple]:
    db.session.rollback()
    rows = db.session.execute(
        select(RoutingRule.team_id, RoutingRule.tag_id, RoutingRule.channel_id)
        .where(RoutingRule.brand_id == brand_id)
        .order_by(RoutingRule.position, RoutingRule.id)
    )
    return [tuple(row) for row in rows]


def test_a_manager_routes_tagged_tickets_and_the_rest(client):
    world = World()
    returns = create_team(world.brand, "Returns")
    support = create_team(world.brand, "Support")
    refund = tags.create_tag(world.brand, None, "refund")
    tags.add_tag_rule(world.brand, None, "refund", "refund")
    ids = world.brand.id, returns.id, support.id, refund.id
    db.session.commit()
    brand_id, returns_id, support_id, refund_id = ids
    signed_in(client, world.manager)

    # The catch-all is made first, yet is tried after the tag's rule.
    answer = post(client, "/settings/teams/routing", {"team_id": support_id})
    assert answer.status_code == 303
    answer = post(client, "/settings/teams/routing", {"team_id": returns_id, "tag_id": refund_id})
    assert answer.status_code == 303
    assert _rules(brand_id) == [(returns_id, refund_id, None), (support_id, None, None)]
    page = client.get("/settings/teams").get_data(as_text=True)
    assert page.index("Tagged refund → <strong>Returns</strong>") < page.index(
        "Every new ticket → <strong>Support</strong>"
    )

    customer = known_contact(world.channel)
    refund_ticket = receive(world.channel, customer.platform_id, "I want a refund").ticket_id
    other = known_contact(world.channel)
    other_ticket = receive(world.channel, other.platform_id, "Hello there").ticket_id
    db.session.commit()
    assert db.session.get(Ticket, refund_ticket).team_id == returns_id
    assert db.session.get(Ticket, other_ticket).team_id == support_id
    actions = db.session.scalars(
        select(AuditEvent.action).where(AuditEvent.brand_id == brand_id).order_by(AuditEvent.id)
    ).all()
    assert actions.count("team.routing_added") == 2


def test_bad_routing_rules_are_refused_next_to_their_field_and_change_nothing(client):
    world, other = World(), World("other")
    team = create_team(world.brand, "Returns")
    theirs = create_team(other.brand, "Theirs")
    refund = tags.create_tag(world.brand, None, "refund")
    db.session.commit()
    team_id, theirs_id, tag_id, channel_id = team.id, theirs.id, refund.id, world.channel.id
    signed_in(client, world.manager)
    post(client, "/settings/teams/routing", {"team_id": team_id})
    cases = [
        ({}, "Choose the team that gets these tickets."),
        ({"team_id": theirs_id}, "Choose a team of this brand."),
        ({"team_id": team_id, "tag_id": tag_id, "channel_id": channel_id}, "one condition"),
        ({"team_id": team_id}, "This rule exists already."),
    ]
    for form, message in cases:
        before = snapshot()
        answer = post(client, "/settings/teams/routing", form)
        assert answer.status_code == 422, form
        assert message in answer.get_data(as_text=True), form
        assert changed(before, snapshot()) == {}, form


def test_removing_a_rule_needs_a_manager_of_its_brand(client, app):
    world, other = World(), World("other")
    team = create_team(world.brand, "Returns")
    db.session.commit()
    signed_in(client, world.manager)
    post(client, "/settings/teams/routing", {"team_id": team.id})
    rule_id = db.session.scalar(select(RoutingRule.id).where(RoutingRule.team_id == team.id))
    db.session.rollback()

    agent = signed_in(app.test_client(), world.agent)
    assert post(agent, f"/settings/teams/routing/{rule_id}/delete").status_code == 403
    stranger = signed_in(app.test_client(), other.admin)
    assert post(stranger, f"/settings/teams/routing/{rule_id}/delete").status_code == 404
    assert _rules(world.brand.id) == [(team.id, None, None)]
    assert post(client, f"/settings/teams/routing/{rule_id}/delete").status_code == 303
    assert _rules(world.brand.id) == []
    assert db.session.scalar(
        select(AuditEvent.changes).where(AuditEvent.action == "team.routing_removed")
    ) == {"routing": ["every new ticket", None]}
