"""Tags on tickets and the keyword rules that tag incoming messages.

Functions flush; the caller commits. Every change to a ticket's tags is recorded as an event and
makes the ticket's SLA policy match again, since a policy may be chosen by tag.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from helpdesk import hooks
from helpdesk.accounts.actor import Actor
from helpdesk.accounts.models import Agent, Role
from helpdesk.accounts.service import require_role
from helpdesk.brands.models import Brand
from helpdesk.database import savepoint
from helpdesk.errors import AlreadyExists, NotFound, ValidationError
from helpdesk.extensions import db
from helpdesk.live import events as live
from helpdesk.memo import cached
from helpdesk.tickets.events import record_event
from helpdesk.tickets.models import Tag, TagRule, Ticket, TicketTag
from helpdesk.types import utcnow

DEFAULT_COLOUR = "#6b7280"
MAX_NAME_CHARS = 64
MAX_KEYWORD_CHARS = 100
COLOUR_RE = re.compile(r"#[0-9a-fA-F]{6}")


# Validation ---------------------------------------------------------------------------------------


def _clean_name(name: str) -> str:
    if not isinstance(name, str):
        raise ValidationError("a tag name must be text")
    name = " ".join(name.split())
    if not 1 <= len(name) <= MAX_NAME_CHARS:
        raise ValidationError(f"a tag name has 1 to {MAX_NAME_CHARS} characters")
    return name


def _clean_colour(colour: str) -> str:
    if not isinstance(colour, str) or not COLOUR_RE.fullmatch(colour.strip()):
        raise ValidationError("a colour is written #rrggbb, e.g. #6b7280")
    return colour.strip().lower()


def find_tag(brand_id: int, name: str) -> Tag | None:
    """The brand's tag of that name, ignoring case: `VIP` and `vip` are one tag."""
    return db.session.scalar(
        select(Tag).where(Tag.brand_id == brand_id, Tag.name_key == _clean_name(name).lower())
    )


def _refuse_duplicate(brand_id: int, name: str, except_id: int | None = None) -> None:
    existing = find_tag(brand_id, name)
    if existing is not None and existing.id != except_id:
        raise AlreadyExists(f"the tag {existing.name!r} already exists")


# Tags ---------------------------------------------------------------------------------------------


def create_tag(brand: Brand, actor: Agent | None, name: str, colour: str = DEFAULT_COLOUR) -> Tag:
    """Any member may add a tag to the brand's list; the name must be new, whatever its case."""
    require_role(actor, brand.id, Role.AGENT)
    name, colour = _clean_name(name), _clean_colour(colour)
    _refuse_duplicate(brand.id, name)
    tag = Tag(brand_id=brand.id, name=name, colour=colour)
    try:
        with db.session.begin_nested():
            db.session.add(tag)
    except IntegrityError as exc:
        raise AlreadyExists(f"the tag {name!r} already exists") from exc
    return tag


def get_or_create_tag(
    brand: Brand, actor: Agent | None, name: str, colour: str = DEFAULT_COLOUR
) -> Tag:
    """Find the tag or create it; safe when two agents type the same new tag at once."""
    require_role(actor, brand.id, Role.AGENT)
    tag = find_tag(brand.id, name)
    if tag is not None:
        return tag
    try:
        return create_tag(brand, actor, name, colour)
    except AlreadyExists:
        tag = find_tag(brand.id, name)
        if tag is None:
            raise
        return tag


def rename_tag(tag: Tag, actor: Agent | None, name: str) -> Tag:
    """Renaming keeps the tag's id, so tickets, rules and SLA policies follow it."""
    require_role(actor, tag.brand_id, Role.MANAGER)
    name = _clean_name(name)
    _refuse_duplicate(tag.brand_id, name, except_id=tag.id)
    tag.name = name
    try:
        with db.session.begin_nested():
            db.session.flush()
    except IntegrityError as exc:
        raise AlreadyExists(f"the tag {name!r} already exists") from exc
    return tag


def recolour_tag(tag: Tag, actor: Agent | None, colour: str) -> Tag:
    require_role(actor, tag.brand_id, Role.MANAGER)
    tag.colour = _clean_colour(colour)
    db.session.flush()
    return tag


def delete_tag(tag: Tag, actor: Actor | Agent | None) -> None:
    """Untag every ticket (the database cascades) and let their SLA policies match again."""
    require_role(actor, tag.brand_id, Role.MANAGER)
    ticket_ids = list(
        db.session.scalars(select(TicketTag.ticket_id).where(TicketTag.tag_id == tag.id))
    )
    db.session.delete(tag)
    db.session.flush()
    for ticket in _active_tickets(ticket_ids):
        _refresh_sla(ticket)


def _active_tickets(ticket_ids: Iterable[int]) -> list[Ticket]:
    ids = list(ticket_ids)
    if not ids:
        return []
    tickets = db.session.scalars(select(Ticket).where(Ticket.id.in_(ids)))
    return [ticket for ticket in tickets if ticket.active]


# Tagging tickets ----------------------------------------------------------------------------------


def _refresh_sla(ticket: Ticket) -> None:
    """SLA policies may be chosen by tag: sla, subscribed to the hook, refreshes the clocks."""
    hooks.publish(hooks.TICKET_CHANGED, ticket=ticket, now=utcnow())


def _is_tagged(ticket: Ticket, tag: Tag) -> bool:
    return (
        db.session.scalar(
            select(TicketTag.id).where(TicketTag.ticket_id == ticket.id, TicketTag.tag_id == tag.id)
        )
        is not None
    )


def _attach(ticket: Ticket, tag: Tag, actor_id: int | None, data: dict | None = None) -> bool:
    """Link the tag unless it already is (also when another process just did); True if new."""
    if _is_tagged(ticket, tag):
        return False
    try:
        with savepoint():
            db.session.add(TicketTag(ticket_id=ticket.id, tag_id=tag.id))
    except IntegrityError:
        return False
    record_event(ticket, "tagged", actor_id, {"tag_id": tag.id, "tag": tag.name, **(data or {})})
    db.session.flush()
    return True


def add_tag(ticket: Ticket, name: str, actor: Agent | None) -> Tag:
    """Tag a ticket, creating a tag the brand lacks; tagging twice is a no-op, not an error."""
    require_role(actor, ticket.brand_id, Role.AGENT)
    brand = db.session.get(Brand, ticket.brand_id)
    tag = get_or_create_tag(brand, actor, name)
    if _attach(ticket, tag, actor.id if actor else None):
        _refresh_sla(ticket)
        live.ticket_updated(ticket)  # the inbox row shows its tags
        hooks.publish(hooks.TICKET_UPDATED, ticket=ticket, actor=actor, now=utcnow())
    return tag


def remove_tag(ticket: Ticket, name: str, actor: Agent | None) -> None:
    """Untag a ticket; NotFound when the ticket does not carry that tag."""
    require_role(actor, ticket.brand_id, Role.AGENT)
    tag = find_tag(ticket.brand_id, name)
    link = (
        db.session.scalar(
            select(TicketTag).where(TicketTag.ticket_id == ticket.id, TicketTag.tag_id == tag.id)
        )
        if tag is not None
        else None
    )
    if link is None:
        raise NotFound(f"the ticket is not tagged {name!r}")
    db.session.delete(link)
    record_event(
        ticket, "untagged", actor.id if actor else None, {"tag_id": tag.id, "tag": tag.name}
    )
    db.session.flush()
    _refresh_sla(ticket)
    live.ticket_updated(ticket)
    hooks.publish(hooks.TICKET_UPDATED, ticket=ticket, actor=actor, now=utcnow())


def ticket_tag_names(ticket_ids: list[int]) -> dict[int, list[str]]:
    """Tag names per ticket for a whole listing page, in one query instead of one per row."""
    names: dict[int, list[str]] = {ticket_id: [] for ticket_id in ticket_ids}
    if not ticket_ids:
        return names
    rows = db.session.execute(
        select(TicketTag.ticket_id, Tag.name)
        .join(Tag, Tag.id == TicketTag.tag_id)
        .where(TicketTag.ticket_id.in_(ticket_ids))
    )
    for ticket_id, name in rows:
        names[ticket_id].append(name)
    for tag_names in names.values():
        tag_names.sort(key=str.casefold)
    return names


# Keyword rules ------------------------------------------------------------------------------------


def _clean_keyword(keyword: str) -> str:
    if not isinstance(keyword, str):
        raise ValidationError("a keyword must be text")
    keyword = " ".join(keyword.split())
    if not 1 <= len(keyword) <= MAX_KEYWORD_CHARS:
        raise ValidationError(f"a keyword has 1 to {MAX_KEYWORD_CHARS} characters")
    return keyword


def add_tag_rule(brand: Brand, actor: Agent | None, keyword: str, tag_name: str) -> TagRule:
    """Tag incoming messages containing `keyword`; a brand-wide automation, so managers only."""
    require_role(actor, brand.id, Role.MANAGER)
    keyword = _clean_keyword(keyword)
    tag = get_or_create_tag(brand, actor, tag_name)
    duplicate = db.session.scalar(
        select(TagRule.id).where(
            TagRule.brand_id == brand.id,
            TagRule.tag_id == tag.id,
            func.lower(TagRule.keyword) == keyword.lower(),
        )
    )
    if duplicate is not None:
        raise AlreadyExists(f"a rule already tags {keyword!r} as {tag.name!r}")
    rule = TagRule(brand_id=brand.id, tag_id=tag.id, keyword=keyword)
    try:
        with db.session.begin_nested():
            db.session.add(rule)
    except IntegrityError as exc:
        raise AlreadyExists(f"a rule already tags {keyword!r} as {tag.name!r}") from exc
    return rule


def list_tag_rules(brand_id: int) -> list[tuple[TagRule, Tag]]:
    return cached(("tag_rules", brand_id), lambda: _load_tag_rules(brand_id))


def _load_tag_rules(brand_id: int) -> list[tuple[TagRule, Tag]]:
    rows = db.session.execute(
        select(TagRule, Tag)
        .join(Tag, Tag.id == TagRule.tag_id)
        .where(TagRule.brand_id == brand_id)
        .order_by(TagRule.keyword, Tag.name)
    )
    return [(rule, tag) for rule, tag in rows]


def keyword_matches(keyword: str, text: str) -> bool:
    """Whole-word-ish and case-insensitive: `refund` matches "Refund?" but not "refunded"."""
    pattern = r"(?<!\w)" + r"\s+".join(map(re.escape, keyword.split())) + r"(?!\w)"
    return re.search(pattern, text, re.IGNORECASE) is not None


def apply_tag_rules(ticket: Ticket, text: str | None) -> list[str]:
    """Tag the ticket, as the system, for every rule whose keyword the message contains."""
    if not text or not text.strip():
        return []
    rules = list_tag_rules(ticket.brand_id)
    added: list[str] = []
    seen: set[int] = set()
    for rule, tag in rules:
        if tag.id in seen or not keyword_matches(rule.keyword, text):
            continue
        seen.add(tag.id)
        if _attach(ticket, tag, None, {"rule_id": rule.id, "keyword": rule.keyword}):
            added.append(tag.name)
    if added:
        _refresh_sla(ticket)
    return added
