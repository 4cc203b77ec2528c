"""Routing rules: which team a new ticket goes to (the first rule that matches, top to bottom).

A rule names a team and at most one condition, a tag or a channel; a rule without a condition
takes every ticket, so it goes after the rules with one whatever the order they were made in
(`position` 0 for rules with a condition, 1 for catch-alls; ties in the order they were made).
Changes are audited under the team.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from helpdesk.accounts.actor import Actor
from helpdesk.accounts.models import Role, Team
from helpdesk.audit import service as audit
from helpdesk.brands.models import Brand
from helpdesk.channels.models import Channel
from helpdesk.errors import InvalidField, NotFound
from helpdesk.extensions import db
from helpdesk.tickets.models import RoutingRule, Tag

SPECIFIC, CATCH_ALL = 0, 1


@dataclass(frozen=True)
class RuleView:
    """A rule as the settings page lists it."""

    id: int
    team: str
    condition: str


def rules(brand_id: int) -> list[RoutingRule]:
    """In the order they are tried."""
    return list(
        db.session.scalars(
            select(RoutingRule)
            .where(RoutingRule.brand_id == brand_id)
            .order_by(RoutingRule.position, RoutingRule.id)
        )
    )


def described(brand_id: int) -> list[RuleView]:
    teams = {
        i: n
        for i, n in db.session.execute(select(Team.id, Team.name).where(Team.brand_id == brand_id))
    }
    tags = {
        i: n
        for i, n in db.session.execute(select(Tag.id, Tag.name).where(Tag.brand_id == brand_id))
    }
    channels = {
        c.id: c for c in db.session.scalars(select(Channel).where(Channel.brand_id == brand_id))
    }
    return [
        RuleView(rule.id, teams.get(rule.team_id, "?"), _condition(rule, tags, channels))
        for rule in rules(brand_id)
    ]


def _condition(rule: RoutingRule, tags: dict[int, str], channels: dict[int, Channel]) -> str:
    if rule.tag_id is not None:
        return f"tagged {tags.get(rule.tag_id, '?')}"
    if rule.channel_id is not None:
        return (
            f"from {channel_label(channels[rule.channel_id])}"
            if rule.channel_id in channels
            else "from ?"
        )
    return "every new ticket"


def channel_label(channel: Channel) -> str:
    if channel.username:
        return f"@{channel.username}"
    return channel.name or f"{channel.kind.value} {channel.account_id}"


def _owned(model: type, brand_id: int, value: int | None, field: str, what: str) -> Any:
    if value is None:
        return None
    row: Any = db.session.get(model, value)
    if row is None or row.brand_id != brand_id:
        raise InvalidField(field, f"Choose {what} of this brand.")
    return row


def add_rule(
    actor: Actor, brand: Brand, team_id: int | None, tag_id: int | None = None,
    channel_id: int | None = None,
) -> RoutingRule:  # fmt: skip
    """A new rule; one condition at most, and the same rule twice is refused."""
    actor.require(Role.MANAGER, "changing routing", brand.id)
    if team_id is None:
        raise InvalidField("team_id", "Choose the team that gets these tickets.")
    team = _owned(Team, brand.id, team_id, "team_id", "a team")
    tag = _owned(Tag, brand.id, tag_id, "tag_id", "a tag")
    channel = _owned(Channel, brand.id, channel_id, "channel_id", "a channel")
    if tag is not None and channel is not None:
        raise InvalidField("condition", "A rule has one condition: a tag or a channel.")
    duplicate = db.session.scalar(
        select(RoutingRule.id).where(
            RoutingRule.brand_id == brand.id,
            RoutingRule.team_id == team.id,
            RoutingRule.tag_id.is_(None) if tag is None else RoutingRule.tag_id == tag.id,
            RoutingRule.channel_id.is_(None)
            if channel is None
            else RoutingRule.channel_id == channel.id,
        )
    )
    if duplicate:
        raise InvalidField("condition", "This rule exists already.")
    rule = RoutingRule(
        brand_id=brand.id,
        team_id=team.id,
        tag_id=tag.id if tag else None,
        channel_id=channel.id if channel else None,
        position=CATCH_ALL if tag is None and channel is None else SPECIFIC,
    )
    db.session.add(rule)
    db.session.flush()
    condition = _condition(
        rule, {tag.id: tag.name} if tag else {}, {channel.id: channel} if channel else {}
    )
    audit.record(actor, brand.id, "team.routing_added", "team", team.id,
                 {"routing": [None, condition]}, label=team.name)  # fmt: skip
    return rule


def get_rule(actor: Actor, rule_id: int) -> RoutingRule:
    rule = db.session.get(RoutingRule, rule_id)
    if rule is None or rule.brand_id != actor.brand_id:
        raise NotFound("no such routing rule")
    return rule


def remove_rule(actor: Actor, rule: RoutingRule) -> None:
    actor.require(Role.MANAGER, "changing routing", rule.brand_id)
    view = next(v for v in described(rule.brand_id) if v.id == rule.id)
    audit.record(actor, rule.brand_id, "team.routing_removed", "team", rule.team_id,
                 {"routing": [view.condition, None]}, label=view.team)  # fmt: skip
    db.session.delete(rule)
    db.session.flush()
