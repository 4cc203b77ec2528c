"""Who is asking and for which brand: loaded once per console request, checked on every object."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import abort, flash, g, redirect, request, session, url_for
from flask_login import current_user

from helpdesk import transaction
from helpdesk.accounts.actor import Actor
from helpdesk.accounts.models import Agent, Role
from helpdesk.accounts.service import memberships
from helpdesk.brands.models import Brand
from helpdesk.dm import visibility
from helpdesk.dm.models import Conversation, Message
from helpdesk.errors import DomainError, Forbidden, NotFound, ValidationError
from helpdesk.web.auth import safe_path

log = logging.getLogger(__name__)
BRAND_KEY = "brand_id"
MAX_ID = 2**31 - 1  # an INTEGER primary key: a larger id is no row, and overflows the drivers


@dataclass(frozen=True)
class BrandChoice:
    id: int
    name: str
    role: Role


def load_context() -> None:
    """g.agent, g.brand, g.role and g.brands for this request; the brand kept in the session is
    used only while the agent is still a member of it (default: the first membership).

    An id in the path that no INTEGER column can hold names nothing: a 404."""
    if any(
        isinstance(value, int) and not 0 < value <= MAX_ID
        for value in (request.view_args or {}).values()
    ):
        abort(404)
    agent: Agent = current_user.agent
    rows = memberships(agent.id)
    if not rows:
        abort(403, description="Your account is not a member of any brand yet.")
    chosen = session.get(BRAND_KEY)
    brand, role = next(((b, r) for b, r in rows if b.id == chosen), rows[0])
    session[BRAND_KEY] = brand.id
    g.agent, g.brand, g.role = agent, brand, role
    g.actor = Actor.for_agent(agent, brand.id, role)
    g.brands = [BrandChoice(b.id, b.name, r) for b, r in rows]


def me() -> Agent:
    return g.agent


def actor() -> Actor:
    """The signed-in agent acting in the current brand, as the services receive them."""
    return g.actor


def brand() -> Brand:
    return g.brand


def require(minimum: Role) -> None:
    """403 below the role; every object was already checked to be the current brand's."""
    if g.role.rank < minimum.rank:
        abort(403, description=f"This needs the {minimum.value} role.")


def is_admin() -> bool:
    return g.role.rank >= Role.ADMIN.rank


def parse_id(value: str | None, what: str) -> int | None:
    """An id sent in a form or a query string: empty is None; anything but ASCII digits that fit
    an INTEGER column is a 400 (`str.isdigit` also says yes to "²", which `int` refuses)."""
    value = (value or "").strip()
    if not value:
        return None
    if not (value.isascii() and value.isdigit()) or not 0 < int(value) <= MAX_ID:
        abort(400, description=f"{what}: an id")
    return int(value)


def conversation_or_404(conversation_id: int) -> Conversation:
    """Another brand's conversation does not exist here; hidden requests are for admins."""
    if not 0 < conversation_id <= MAX_ID:
        abort(404)
    try:
        return visibility.conversation_for(actor(), conversation_id)
    except NotFound:
        abort(404)
    except Forbidden as refused:
        abort(403, description=f"{refused.message}.")


def message_or_404(conversation: Conversation, message_id: int) -> Message:
    message = visibility.message_in(conversation, message_id) if 0 < message_id <= MAX_ID else None
    if message is None:
        abort(404)
    return message


def back(default: str | None = None):
    return redirect(safe_path(request.form.get("next"), default or url_for("console.inbox")))


def perform(
    action: Callable[[], object],
    success: str | None,
    default: str | None = None,
    after: Callable[[object], object] | None = None,
):
    """Run one service call, commit, say so, and go back; a refusal is a flash, nothing saved.
    A missing role is no flash: it answers 403, as the console does wherever a role is missing.

    `after` runs once the commit is done: work for the queues must see committed rows.
    """
    try:
        result = action()
    except Forbidden:
        transaction.rollback()
        raise
    except DomainError as refused:
        transaction.rollback()
        flash(refused.message, "error")
        return back(default)
    transaction.commit()
    if after is not None:
        after(result)
    if success:
        flash(success, "success")
    return back(default)


def timezone() -> ZoneInfo:
    try:
        return ZoneInfo(g.brand.timezone) if g.get("brand") else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def parse_local(value: str | None, what: str) -> datetime | None:
    """A `datetime-local` input typed in the brand's time zone, as an aware UTC time."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        naive = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(f"{what}: not a date and time") from None
    try:
        if naive.tzinfo is not None:
            return naive.astimezone(UTC)
        return naive.replace(tzinfo=timezone()).astimezone(UTC)
    except OverflowError:  # 0001-01-01 east of UTC is before the first representable time
        raise ValidationError(f"{what}: out of range") from None
