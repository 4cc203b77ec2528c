"""Settings: the brand's tags, their colours and the keywords that apply them to new messages.

One page: the list with an edit form in each row and a form for a new tag. A refused edit
re-renders the page with that row's form open and the message next to its field.
"""

from __future__ import annotations

from flask import g, render_template, request, url_for
from flask.typing import ResponseReturnValue

from helpdesk.accounts.models import Role
from helpdesk.tickets import tag_settings
from helpdesk.tickets.tags import DEFAULT_COLOUR
from helpdesk.web.settings import bp, page
from helpdesk.web.settings.forms import attempt, submitted

LIST = "settings.tags"


def _render(errors: dict[str, str] | None = None, editing: int | None = None) -> str:
    """The page; after a refusal, `editing` names the row whose form is refilled (None: new)."""
    rows = tag_settings.list_tags(g.brand.id)
    ids = [tag.id for tag in rows]
    return render_template(
        "settings/tags.html",
        tags=rows,
        keywords=tag_settings.keywords_of(ids),
        usage=tag_settings.usage_of(ids),
        default_colour=DEFAULT_COLOUR,
        errors=errors or {},
        form=submitted() if errors else {},
        editing=editing,
    )


@bp.get("/settings/tags")
@page(Role.MANAGER)
def tags() -> ResponseReturnValue:
    return _render()


@bp.post("/settings/tags")
@page(Role.MANAGER)
def create_tag() -> ResponseReturnValue:
    form = request.form
    return attempt(
        lambda: tag_settings.save_tag(
            g.brand,
            g.actor,
            form.get("name", ""),
            form.get("colour") or DEFAULT_COLOUR,
            form.get("keywords", ""),
        ),
        lambda tag: f"Created the tag {tag.name}.",
        url_for(LIST),
        lambda errors: _render(errors),
    )


@bp.post("/settings/tags/<int:tag_id>")
@page(Role.MANAGER)
def update_tag(tag_id: int) -> ResponseReturnValue:
    tag = tag_settings.get_tag(g.brand.id, tag_id)
    form = request.form
    return attempt(
        lambda: tag_settings.save_tag(
            g.brand,
            g.actor,
            form.get("name", ""),
            form.get("colour", tag.colour),
            form.get("keywords", ""),
            tag=tag,
        ),
        lambda saved: f"Saved the tag {saved.name}.",
        url_for(LIST),
        lambda errors: _render(errors, editing=tag_id),
    )


@bp.post("/settings/tags/<int:tag_id>/delete")
@page(Role.MANAGER)
def delete_tag(tag_id: int) -> ResponseReturnValue:
    tag = tag_settings.get_tag(g.brand.id, tag_id)
    name = tag.name
    return attempt(
        lambda: tag_settings.delete_tag(tag, g.actor),
        f"Deleted the tag {name}; no ticket carries it any more.",
        url_for(LIST),
        lambda errors: _render(errors, editing=tag_id),
    )
