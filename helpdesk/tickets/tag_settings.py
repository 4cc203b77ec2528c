"""The brand's list of tags as a setting: name, colour and the keywords that apply each one.

One save function serves the settings page and the API alike: it checks every field before
writing anything, keeps the tag's keyword rules equal to the list given, and records the change
in the audit log in the same transaction. Functions flush; the caller commits.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from helpdesk.accounts.actor import Actor
from helpdesk.accounts.models import Agent, Role
from helpdesk.accounts.service import require_role
from helpdesk.audit import service as audit
from helpdesk.brands.models import Brand
from helpdesk.errors import AlreadyExists, InvalidField, NotFound, about_field
from helpdesk.extensions import db
from helpdesk.tickets import tags
from helpdesk.tickets.models import Tag, TagRule, TicketTag

#: A tag's keywords are typed as one text: separated by commas or new lines.
KEYWORD_SEPARATORS = re.compile(r"[,\n]")
MAX_KEYWORDS = 50

ActorLike = Actor | Agent | None


def _name_taken(name: str) -> AlreadyExists:
    refused = AlreadyExists(f"the tag {name!r} already exists")
    refused.fields = {"name": [f"another tag is already called {name!r}"]}  # type: ignore[attr-defined]
    return refused


def clean_keywords(keywords: str | Iterable[str] | None) -> list[str]:
    """The distinct keywords, in the order given: `refund, Refund` is one keyword."""
    if keywords is None:
        return []
    if isinstance(keywords, str):
        keywords = KEYWORD_SEPARATORS.split(keywords)
    cleaned: list[str] = []
    seen: set[str] = set()
    for keyword in keywords:
        if isinstance(keyword, str) and not keyword.strip():
            continue
        with about_field("keywords"):
            word = tags._clean_keyword(keyword)
        if word.lower() not in seen:
            seen.add(word.lower())
            cleaned.append(word)
    if len(cleaned) > MAX_KEYWORDS:
        raise InvalidField("keywords", f"a tag has at most {MAX_KEYWORDS} keywords")
    return cleaned


# Reading ------------------------------------------------------------------------------------------


def get_tag(brand_id: int, tag_id: int) -> Tag:
    """The brand's tag; another brand's is NotFound, like none at all."""
    tag = db.session.get(Tag, tag_id)
    if tag is None or tag.brand_id != brand_id:
        raise NotFound("no such tag")
    return tag


def keywords_of(tag_ids: Iterable[int]) -> dict[int, list[str]]:
    """Keywords per tag, for a whole listing in one query."""
    ids = list(tag_ids)
    found: dict[int, list[str]] = {tag_id: [] for tag_id in ids}
    if not ids:
        return found
    rows = db.session.execute(
        select(TagRule.tag_id, TagRule.keyword).where(TagRule.tag_id.in_(ids)).order_by(TagRule.id)
    )
    for tag_id, keyword in rows:
        found[tag_id].append(keyword)
    return found


def usage_of(tag_ids: Iterable[int]) -> dict[int, int]:
    """How many tickets carry each tag, in one grouped count."""
    ids = list(tag_ids)
    counts = {tag_id: 0 for tag_id in ids}
    if ids:
        rows = db.session.execute(
            select(TicketTag.tag_id, func.count())
            .where(TicketTag.tag_id.in_(ids))
            .group_by(TicketTag.tag_id)
        )
        counts.update({tag_id: count for tag_id, count in rows})
    return counts


def tags_query(brand_id: int) -> Any:
    """The brand's tags by name, for a listing to order and page."""
    return select(Tag).where(Tag.brand_id == brand_id)


def list_tags(brand_id: int) -> list[Tag]:
    return list(db.session.scalars(tags_query(brand_id).order_by(Tag.name_key)))


def to_dict(tag: Tag, keywords: list[str] | None = None) -> dict[str, Any]:
    """The API's shape of a tag."""
    if keywords is None:
        keywords = keywords_of([tag.id])[tag.id]
    return {"id": tag.id, "name": tag.name, "colour": tag.colour, "keywords": keywords}


# Changing -----------------------------------------------------------------------------------------


def _snapshot(tag: Tag) -> dict[str, Any]:
    return {
        "name": tag.name,
        "colour": tag.colour,
        "keywords": keywords_of([tag.id])[tag.id] if tag.id else [],
    }


def _set_keywords(tag: Tag, keywords: list[str]) -> None:
    """Make the tag's rules exactly `keywords`: keep matching rows (new case), add, remove."""
    wanted = {keyword.lower(): keyword for keyword in keywords}
    rules = db.session.scalars(select(TagRule).where(TagRule.tag_id == tag.id))
    for rule in rules:
        keyword = wanted.pop(rule.keyword.lower(), None)
        if keyword is None:
            db.session.delete(rule)
        else:
            rule.keyword = keyword
    db.session.flush()
    for keyword in keywords:
        if keyword.lower() in wanted:
            db.session.add(TagRule(brand_id=tag.brand_id, tag_id=tag.id, keyword=keyword))
    db.session.flush()


def save_tag(
    brand: Brand,
    actor: ActorLike,
    name: str,
    colour: str | None = None,
    keywords: str | Iterable[str] | None = None,
    tag: Tag | None = None,
) -> Tag:
    """Create a tag (no `tag`) or change one: every field checked before anything is written.

    `colour` None keeps the tag's colour (a new tag gets the default); `keywords` None keeps
    its keywords. The name is unique in the brand whatever its case.
    """
    require_role(actor, brand.id, Role.MANAGER)
    if tag is not None and tag.brand_id != brand.id:
        raise NotFound("no such tag")
    with about_field("name"):
        clean_name = tags._clean_name(name)
    with about_field("colour"):
        clean_colour = tags._clean_colour(colour) if colour is not None else None
    clean_words = clean_keywords(keywords) if keywords is not None else None
    existing = tags.find_tag(brand.id, clean_name)
    if existing is not None and (tag is None or existing.id != tag.id):
        raise _name_taken(existing.name)
    before = _snapshot(tag) if tag is not None else {}
    if tag is None:
        tag = Tag(brand_id=brand.id, name=clean_name, colour=clean_colour or tags.DEFAULT_COLOUR)
    else:
        tag.name = clean_name
        tag.colour = clean_colour or tag.colour
    try:
        with db.session.begin_nested():
            db.session.add(tag)
    except IntegrityError as exc:  # the name taken by a concurrent save
        raise _name_taken(clean_name) from exc
    if clean_words is not None:
        _set_keywords(tag, clean_words)
    after = _snapshot(tag)
    verb = "updated" if before else "created"
    changes = audit.diff(before, after)
    if changes:
        audit.record(actor, brand.id, f"tag.{verb}", "tag", tag.id, changes, label=tag.name)
    return tag


def delete_tag(tag: Tag, actor: ActorLike) -> None:
    """Remove the tag from every ticket and its keyword rules with it (the database cascades)."""
    require_role(actor, tag.brand_id, Role.MANAGER)
    audit.record(
        actor, tag.brand_id, "tag.deleted", "tag", tag.id, audit.removed(_snapshot(tag)), tag.name
    )
    tags.delete_tag(tag, actor)
