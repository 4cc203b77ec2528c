"""Settings: canned replies. Every agent keeps personal replies here; a manager also the brand's
shared ones. Who may share or change a reply is the canned service's rule, asked, never copied.

Each form has two buttons: Save (a 303 on success) and Preview, which re-renders the page with the
body filled for a sample contact and saves nothing. The preview is a POST so a long body never
travels in a URL.
"""

from __future__ import annotations

from typing import Any

from flask import g, render_template, request, url_for
from flask.typing import ResponseReturnValue

from helpdesk.accounts.models import Role
from helpdesk.canned import service as canned
from helpdesk.canned.models import CannedReply
from helpdesk.canned.render import ALLOWED_NAMES, RenderResult
from helpdesk.errors import DomainError
from helpdesk.web.settings import bp, page
from helpdesk.web.settings.forms import attempt, errors_of, submitted

LIST = "settings.canned_replies"


def _attachments(text: str) -> list[dict[str, str]]:
    """One attachment a line, `image https://...` or a bare URL (an image); the service checks
    the type and the link."""
    found = []
    for line in text.splitlines():
        words = line.split()
        if len(words) == 1:
            found.append({"type": "image", "url": words[0]})
        elif words:
            found.append({"type": words[0].lower(), "url": " ".join(words[1:])})
    return found


def attachment_lines(reply: CannedReply) -> str:
    return "\n".join(f"{a['type']} {a['url']}" for a in reply.attachments or [])


def _values() -> dict[str, Any]:
    form = request.form
    return {
        "shortcode": form.get("shortcode", ""),
        "title": form.get("title", ""),
        "body": form.get("body", ""),
        "attachments": _attachments(form.get("attachments", "")),
        "shared": bool(form.get("shared")),
    }


def _form_of(reply: CannedReply) -> dict[str, Any]:
    return {
        "shortcode": reply.shortcode,
        "title": reply.title,
        "body": reply.body,
        "attachments": attachment_lines(reply),
        "shared": reply.owner_id is None,
    }


def _preview(body: str) -> tuple[RenderResult | None, dict[str, str]]:
    """The body filled for the sample contact, or the refusal to show next to the body."""
    if not body.strip():
        return None, {}
    try:
        return canned.preview(body, g.agent, g.brand), {}
    except DomainError as refused:
        return None, errors_of(refused)


def _render(
    reply: CannedReply | None = None,
    form: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    preview: RenderResult | None = None,
) -> str:
    if form is None:
        form = _form_of(reply) if reply is not None else {}
    if preview is None and reply is not None and not errors:
        preview, _ = _preview(reply.body)
    return render_template(
        "settings/canned_replies.html",
        reply=reply,
        replies=[] if reply is not None else canned.visible(g.brand.id, g.actor),
        editable=canned.editable(reply, g.actor) if reply is not None else True,
        may_share=canned.may_share(g.brand.id, g.actor),
        form=form,
        errors=errors or {},
        preview=preview,
        placeholders=ALLOWED_NAMES,
        sample=canned.SAMPLE_CONTACT,
    )


def _previewed(reply: CannedReply | None) -> ResponseReturnValue:
    """The Preview button: the same page, the typed values kept, the body filled; not saved."""
    form = submitted()
    preview, errors = _preview(form.get("body", ""))
    return _render(reply, form, errors, preview), 422 if errors else 200


def _load(reply_id: int) -> CannedReply:
    """Another brand's reply, or another agent's personal one, is a 404."""
    return canned.get(reply_id, g.actor, g.brand.id)


@bp.get("/settings/canned-replies")
@page(Role.AGENT)
def canned_replies() -> ResponseReturnValue:
    return _render()


@bp.post("/settings/canned-replies")
@page(Role.AGENT)
def create_canned_reply() -> ResponseReturnValue:
    if request.form.get("action") == "preview":
        return _previewed(None)
    values = _values()
    return attempt(
        lambda: canned.create(
            g.brand,
            g.actor,
            values["shortcode"],
            values["title"],
            values["body"],
            attachments=values["attachments"],
            shared=values["shared"],
        ),
        lambda reply: f"Saved /{reply.shortcode}.",
        url_for(LIST),
        lambda errors: _render(None, submitted(), errors),
    )


@bp.get("/settings/canned-replies/<int:reply_id>")
@page(Role.AGENT)
def edit_canned_reply(reply_id: int) -> ResponseReturnValue:
    return _render(_load(reply_id))


@bp.post("/settings/canned-replies/<int:reply_id>")
@page(Role.AGENT)
def update_canned_reply(reply_id: int) -> ResponseReturnValue:
    reply = _load(reply_id)
    if request.form.get("action") == "preview":
        return _previewed(reply)
    values = _values()
    return attempt(
        lambda: canned.update(reply, g.actor, **values),
        lambda saved: f"Saved /{saved.shortcode}.",
        url_for(LIST),
        lambda errors: _render(reply, submitted(), errors),
    )


@bp.post("/settings/canned-replies/<int:reply_id>/delete")
@page(Role.AGENT)
def delete_canned_reply(reply_id: int) -> ResponseReturnValue:
    reply = _load(reply_id)
    shortcode = reply.shortcode
    return attempt(
        lambda: canned.delete(reply, g.actor),
        f"Deleted /{shortcode}.",
        url_for(LIST),
        lambda errors: _render(reply, None, errors),
    )
