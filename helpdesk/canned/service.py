"""Canned replies: saved answers, shared with the brand or personal to one agent.

Functions flush; the caller commits. A body is checked by the sandbox before anything is written,
and a personal reply is invisible (NotFound) to everyone but its owner.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Select, and_, case, false, or_, select
from sqlalchemy import update as update_rows
from sqlalchemy.exc import IntegrityError

from helpdesk.accounts.actor import Actor, agent_id_of
from helpdesk.accounts.models import Agent, Role
from helpdesk.accounts.service import require_role
from helpdesk.audit import service as audit
from helpdesk.brands.models import Brand
from helpdesk.canned.models import CannedReply
from helpdesk.canned.render import CannedContext, RenderResult, render_canned, validate_canned
from helpdesk.dm.models import Contact, Conversation
from helpdesk.errors import (
    AlreadyExists,
    Forbidden,
    NotFound,
    ValidationError,
    about_field,
)
from helpdesk.extensions import db
from helpdesk.search.matching import contains, starts_with
from helpdesk.tickets.models import Ticket

SHORTCODE_RE = re.compile(r"[a-z0-9_-]{1,40}")
MAX_TITLE_CHARS = 200
MAX_ATTACHMENTS = 10
MAX_URL_CHARS = 2000
ATTACHMENT_TYPES = ("image", "video", "audio", "file")
SEARCH_LIMIT = 50
AUDITED = ("shortcode", "title", "body", "attachments")


class _Unset:
    """Marks an argument of `update` that was not given, so None can still mean something."""


UNSET: Any = _Unset()


# Validation ---------------------------------------------------------------------------------------


def _in_use(code: str) -> AlreadyExists:
    refused = AlreadyExists(f"the shortcode /{code} is already in use")
    refused.fields = {"shortcode": [f"/{code} is already used by another reply"]}  # type: ignore[attr-defined]
    return refused


def normalize_shortcode(shortcode: str) -> str:
    """The stored form: no leading `/`, lowercase, so `/Refund` and `refund` are the same code."""
    if not isinstance(shortcode, str):
        raise ValidationError("a shortcode must be text")
    code = shortcode.strip().removeprefix("/").lower()
    if not SHORTCODE_RE.fullmatch(code):
        raise ValidationError(
            "a shortcode has 1 to 40 characters: lowercase letters, digits, '-' or '_'"
        )
    return code


def _clean_title(title: str | None, shortcode: str) -> str:
    title = (title or "").strip() or shortcode
    if len(title) > MAX_TITLE_CHARS:
        raise ValidationError(f"a title is at most {MAX_TITLE_CHARS} characters")
    return title


def _clean_attachments(attachments: list[dict] | None) -> list[dict]:
    """Only http(s) links of the kinds the Send API accepts, stored as plain {type, url}."""
    if attachments is None:
        return []
    if not isinstance(attachments, list):
        raise ValidationError("attachments must be a list of {type, url}")
    if len(attachments) > MAX_ATTACHMENTS:
        raise ValidationError(f"a canned reply has at most {MAX_ATTACHMENTS} attachments")
    cleaned = []
    for attachment in attachments:
        if not isinstance(attachment, dict):
            raise ValidationError("an attachment is an object {type, url}")
        kind, url = attachment.get("type"), attachment.get("url")
        if kind not in ATTACHMENT_TYPES:
            raise ValidationError(
                f"an attachment's type is one of {', '.join(ATTACHMENT_TYPES)}, not {kind!r}"
            )
        if not isinstance(url, str) or len(url) > MAX_URL_CHARS:
            raise ValidationError("an attachment needs a URL")
        parts = urlsplit(url.strip())
        if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
            raise ValidationError("an attachment's URL must start with http:// or https://")
        cleaned.append({"type": kind, "url": url.strip()})
    return cleaned


def _shortcode_taken(brand_id: int, shortcode: str, except_id: int | None = None) -> bool:
    query = select(CannedReply.id).where(
        CannedReply.brand_id == brand_id, CannedReply.shortcode == shortcode
    )
    if except_id is not None:
        query = query.where(CannedReply.id != except_id)
    return db.session.scalar(query) is not None


def _flush_unique(reply: CannedReply) -> None:
    """Flush in a savepoint so a shortcode taken concurrently becomes AlreadyExists, not a 500."""
    try:
        with db.session.begin_nested():
            db.session.add(reply)
    except IntegrityError as exc:
        raise _in_use(reply.shortcode) from exc


# Access -------------------------------------------------------------------------------------------


def _check_visible(reply: CannedReply, actor: Actor | Agent | None) -> None:
    """Members see shared replies and their own; someone else's personal reply does not exist."""
    require_role(actor, reply.brand_id, Role.AGENT)
    if actor is not None and reply.owner_id is not None and reply.owner_id != agent_id_of(actor):
        raise NotFound("no such canned reply")


def _check_editable(reply: CannedReply, actor: Actor | Agent | None) -> None:
    _check_visible(reply, actor)
    if reply.owner_id is None:
        require_role(actor, reply.brand_id, Role.MANAGER)


# CRUD ---------------------------------------------------------------------------------------------


def create(
    brand: Brand,
    actor: Actor | Agent | None,
    shortcode: str,
    title: str | None,
    body: str,
    *,
    attachments: list[dict] | None = None,
    shared: bool = False,
) -> CannedReply:
    """Save a reply; anyone may keep personal ones, only a manager speaks for the whole brand."""
    require_role(actor, brand.id, Role.MANAGER if shared else Role.AGENT)
    if not shared and actor is None:
        raise ValidationError("a personal canned reply needs an owner")
    with about_field("shortcode"):
        code = normalize_shortcode(shortcode)
    with about_field("body"):
        validate_canned(body)
    with about_field("title"):
        clean_title = _clean_title(title, code)
    with about_field("attachments"):
        clean_attachments = _clean_attachments(attachments)
    reply = CannedReply(
        brand_id=brand.id,
        owner_id=None if shared else agent_id_of(actor),
        shortcode=code,
        title=clean_title,
        body=body,
        attachments=clean_attachments,
    )
    if _shortcode_taken(brand.id, code):
        raise _in_use(code)
    _flush_unique(reply)
    _audit(actor, reply, "created", {}, _audited(reply))
    return reply


def get(reply_id: int, actor: Actor | Agent | None, brand_id: int | None = None) -> CannedReply:
    """Load a reply the actor may see; `brand_id` scopes it to the brand a request acts for."""
    reply = db.session.get(CannedReply, reply_id)
    if reply is None or (brand_id is not None and reply.brand_id != brand_id):
        raise NotFound("no such canned reply")
    _check_visible(reply, actor)
    return reply


def update(
    reply: CannedReply,
    actor: Actor | Agent | None,
    *,
    shortcode: str = UNSET,
    title: str | None = UNSET,
    body: str = UNSET,
    attachments: list[dict] | None = UNSET,
    shared: bool = UNSET,
) -> CannedReply:
    """Change the given fields; validating them all first so a refused edit changes nothing."""
    _check_editable(reply, actor)
    before = _audited(reply)
    changes: dict[str, Any] = {}
    if shared is not UNSET and bool(shared) != (reply.owner_id is None):
        require_role(actor, reply.brand_id, Role.MANAGER)
        if not shared and actor is None:
            raise ValidationError("a personal canned reply needs an owner")
        changes["owner_id"] = None if shared else agent_id_of(actor)
    code = reply.shortcode
    if shortcode is not UNSET:
        with about_field("shortcode"):
            code = normalize_shortcode(shortcode)
        if code != reply.shortcode and _shortcode_taken(reply.brand_id, code, reply.id):
            raise _in_use(code)
        changes["shortcode"] = code
    if title is not UNSET:
        with about_field("title"):
            changes["title"] = _clean_title(title, code)
    if body is not UNSET:
        with about_field("body"):
            validate_canned(body)
        changes["body"] = body
    if attachments is not UNSET:
        with about_field("attachments"):
            changes["attachments"] = _clean_attachments(attachments)
    for name, value in changes.items():
        setattr(reply, name, value)
    _flush_unique(reply)
    _audit(actor, reply, "updated", before, _audited(reply))
    return reply


def delete(reply: CannedReply, actor: Actor | Agent | None) -> None:
    """Remove a reply; the same rules as editing it."""
    _check_editable(reply, actor)
    _audit(actor, reply, "deleted", _audited(reply), {})
    db.session.delete(reply)
    db.session.flush()


def _audited(reply: CannedReply) -> dict[str, Any]:
    values = audit.snapshot(reply, AUDITED)
    return {**values, "shared": reply.owner_id is None}


def _audit(
    actor: Actor | Agent | None,
    reply: CannedReply,
    verb: str,
    before: dict[str, Any],
    after: dict[str, Any],
) -> None:
    """Shared replies speak for the brand and are audited; a personal reply is its owner's
    private note, kept out of a log every admin reads (unless it becomes or stops being shared)."""
    if not (before.get("shared") or after.get("shared")):
        return
    changes = audit.diff(before, after)
    if changes:
        audit.record(
            actor,
            reply.brand_id,
            f"canned_reply.{verb}",
            "canned_reply",
            reply.id,
            changes,
            label=f"/{reply.shortcode}",
        )


def editable(reply: CannedReply, actor: Actor | Agent | None) -> bool:
    """Whether the actor may change the reply: a page offers the form only then."""
    try:
        _check_editable(reply, actor)
    except Forbidden:
        return False
    return True


def may_share(brand_id: int, actor: Actor | Agent | None) -> bool:
    """Whether the actor may save replies for the whole brand (the shared checkbox)."""
    try:
        require_role(actor, brand_id, Role.MANAGER)
    except Forbidden:
        return False
    return True


# Listing and search -------------------------------------------------------------------------------


def _visible_to(brand_id: int, actor: Actor | Agent | None) -> Select:
    owned = CannedReply.owner_id == agent_id_of(actor) if actor is not None else false()
    return select(CannedReply).where(
        CannedReply.brand_id == brand_id, or_(CannedReply.owner_id.is_(None), owned)
    )


def visible(brand_id: int, actor: Actor | Agent | None) -> list[CannedReply]:
    """Every reply the actor can use, for the settings list: shared ones first, by shortcode."""
    require_role(actor, brand_id, Role.AGENT)
    statement = _visible_to(brand_id, actor).order_by(
        case((CannedReply.owner_id.is_(None), 0), else_=1), CannedReply.shortcode
    )
    return list(db.session.scalars(statement))


def shared_query(brand_id: int, query: str = "") -> Select:
    """The brand's shared replies, for a listing to order and page (the API's: a token is no
    agent and has no personal replies); a query matches a shortcode prefix or every word."""
    statement = select(CannedReply).where(
        CannedReply.brand_id == brand_id, CannedReply.owner_id.is_(None)
    )
    text = (query or "").strip().lower()
    if text:
        prefix = starts_with(CannedReply.shortcode, text.removeprefix("/"))
        words = and_(
            *(
                or_(contains(CannedReply.title, word), contains(CannedReply.body, word))
                for word in text.split()
            )
        )
        statement = statement.where(prefix if text.startswith("/") else or_(prefix, words))
    return statement


def search(
    brand_id: int, actor: Actor | Agent | None, query: str = "", limit: int = SEARCH_LIMIT
) -> list[CannedReply]:
    """Replies the actor can use, for the `/` picker: shortcode prefix first, then by words.

    `/ref` matches shortcodes only; `refund policy` also matches replies whose title or body
    contains every word. The actor's personal replies come with the brand's shared ones.
    """
    require_role(actor, brand_id, Role.AGENT)
    statement = _visible_to(brand_id, actor)
    text = (query or "").strip().lower()
    if text:
        prefix = starts_with(CannedReply.shortcode, text.removeprefix("/"))
        if text.startswith("/"):
            statement = statement.where(prefix)
        else:
            every_word = and_(
                *(
                    or_(contains(CannedReply.title, word), contains(CannedReply.body, word))
                    for word in text.split()
                )
            )
            statement = statement.where(or_(prefix, every_word))
        statement = statement.order_by(case((prefix, 0), else_=1))
    statement = statement.order_by(CannedReply.usage_count.desc(), CannedReply.shortcode)
    return list(db.session.scalars(statement.limit(max(1, min(limit, 100)))))


# Rendering ----------------------------------------------------------------------------------------


def context_for(
    conversation: Conversation, agent: Agent | None, ticket: Ticket | None = None
) -> CannedContext:
    """Copy plain values out of the rows: the sandbox never sees an ORM object."""
    contact = (
        db.session.get(Contact, conversation.contact_id)
        if conversation.contact_id is not None
        else None
    )
    brand = db.session.get(Brand, conversation.brand_id)
    ticket_id = ticket.id if ticket is not None else conversation.current_ticket_id
    return CannedContext(
        contact_first_name=(contact.first_name or None) if contact else None,
        contact_username=contact.username if contact else None,
        contact_name=contact.name if contact else None,
        agent_first_name=(agent.first_name or None) if agent else None,
        agent_name=agent.name if agent else None,
        brand_name=brand.name if brand else None,
        ticket_id=int(ticket_id) if ticket_id is not None else None,
    )


def render(
    reply: CannedReply,
    conversation: Conversation,
    agent: Agent | None,
    ticket: Ticket | None = None,
) -> RenderResult:
    """Fill the reply for one conversation and count the use, so popular replies rise in search."""
    _check_visible(reply, agent)
    if conversation.brand_id != reply.brand_id:
        raise NotFound("no such conversation")
    if ticket is not None and ticket.conversation_id != conversation.id:
        raise ValidationError("the ticket belongs to another conversation")
    result = render_canned(reply.body, context_for(conversation, agent, ticket))
    db.session.execute(
        update_rows(CannedReply)
        .where(CannedReply.id == reply.id)
        .values(usage_count=CannedReply.usage_count + 1)
        .execution_options(synchronize_session=False)
    )
    db.session.expire(reply, ["usage_count"])
    return result


#: The customer a preview is written to: no real contact's data is shown while editing.
SAMPLE_CONTACT = {"first_name": "Jane", "username": "jane.doe", "name": "Jane Doe"}
SAMPLE_TICKET_ID = 1234


def preview(body: str, agent: Agent | None, brand: Brand) -> RenderResult:
    """The body filled for a sample contact and the editing agent, checked as saving checks it;
    nothing is counted or stored."""
    with about_field("body"):
        validate_canned(body)
        return render_canned(
            body,
            CannedContext(
                contact_first_name=SAMPLE_CONTACT["first_name"],
                contact_username=SAMPLE_CONTACT["username"],
                contact_name=SAMPLE_CONTACT["name"],
                agent_first_name=(agent.first_name or None) if agent else None,
                agent_name=agent.name if agent else None,
                brand_name=brand.name,
                ticket_id=SAMPLE_TICKET_ID,
            ),
        )


def to_dict(reply: CannedReply) -> dict[str, Any]:
    """The API's shape of a reply."""
    return {
        "id": reply.id,
        "shortcode": reply.shortcode,
        "title": reply.title,
        "body": reply.body,
        "attachments": list(reply.attachments or []),
        "shared": reply.owner_id is None,
        "owner_id": reply.owner_id,
        "usage_count": reply.usage_count,
    }
