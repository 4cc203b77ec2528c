"""The console inbox's filter: what an agent may ask the listing for, read from the query string
and checked against the brand and the agent's role before any listing query runs."""

from __future__ import annotations

from dataclasses import dataclass, replace

from sqlalchemy import select

from helpdesk.accounts.models import Role, Team
from helpdesk.channels.models import Channel
from helpdesk.dm.visibility import sees_hidden_requests
from helpdesk.errors import Forbidden, NotFound, ValidationError
from helpdesk.extensions import db
from helpdesk.inbox.folders import FOLDERS
from helpdesk.tickets.models import Priority
from helpdesk.tickets.queries import SLA_FILTERS

SORTS = ("sla", "newest", "waiting")
STATUSES = ("active", "open", "pending", "snoozed", "resolved", "closed", "all")


@dataclass(frozen=True)
class InboxFilter:
    """What the agent asked for, already checked against the brand and the agent's role."""

    folder: str = "primary"
    view: str = "all"  # mine | unassigned | all | team:<id>
    status: str = "active"
    tag: str | None = None
    priority: str | None = None
    channel_id: int | None = None
    sla: str | None = None
    sort: str = "sla"
    page: int = 1

    @property
    def team_id(self) -> int | None:
        return int(self.view.split(":", 1)[1]) if self.view.startswith("team:") else None

    def args(self, **changes) -> dict[str, str]:
        """Query arguments for a link to this listing with some changes (defaults left out)."""
        chosen = replace(self, **changes)
        out = {}
        for name, default in InboxFilter.__dataclass_fields__.items():
            value = getattr(chosen, name)
            if value is not None and value != default.default:
                out[name] = str(value)
        return out


# Parsing ------------------------------------------------------------------------------------------


def _choice(value: str | None, allowed: tuple[str, ...], default: str, what: str) -> str:
    value = (value or "").strip().lower() or default
    if value not in allowed:
        raise ValidationError(f"unknown {what} {value!r}")
    return value


def parse_filter(args, brand_id: int, role: Role) -> InboxFilter:
    """Read the query string; ValidationError for a bad value, NotFound for another brand's team
    or channel, Forbidden for the hidden folder below the admin role."""
    folder = _choice(args.get("folder"), FOLDERS, "primary", "folder")
    if folder == "hidden" and not sees_hidden_requests(role):
        raise Forbidden("hidden requests are for admins")
    view = (args.get("view") or "all").strip().lower()
    if view.startswith("team:"):
        team_id = _int(view[5:], "team")
        if (
            db.session.scalar(select(Team.id).where(Team.id == team_id, Team.brand_id == brand_id))
            is None
        ):
            raise NotFound("no such team")
        view = f"team:{team_id}"
    elif view not in ("mine", "unassigned", "all"):
        raise ValidationError(f"unknown view {view!r}")
    channel_id = None
    if args.get("channel"):
        channel_id = _int(args.get("channel"), "channel")
        if (
            db.session.scalar(
                select(Channel.id).where(Channel.id == channel_id, Channel.brand_id == brand_id)
            )
            is None
        ):
            raise NotFound("no such channel")
    priority = args.get("priority") or None
    if priority is not None and priority not in {p.value for p in Priority}:
        raise ValidationError(f"unknown priority {priority!r}")
    sla = args.get("sla") or None
    if sla is not None and sla not in SLA_FILTERS:
        raise ValidationError(f"unknown SLA filter {sla!r}")
    tag = " ".join((args.get("tag") or "").split())[:64] or None
    page = _int(args.get("page") or "1", "page")
    return InboxFilter(
        folder=folder,
        view=view,
        status=_choice(args.get("status"), STATUSES, "active", "status"),
        tag=tag,
        priority=priority,
        channel_id=channel_id,
        sla=sla,
        sort=_choice(args.get("sort"), SORTS, "sla", "sort"),
        page=max(1, min(page, 10_000)),
    )


def _int(value: str | None, what: str) -> int:
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        raise ValidationError(f"the {what} must be a number") from None
    if number < 0 or number > 2**31 - 1:  # past an INTEGER column: PostgreSQL refuses to compare
        raise ValidationError(f"the {what} is out of range")
    return number
