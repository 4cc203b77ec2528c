"""Canned replies shared with the brand (agents' personal replies stay theirs), and rendering."""

from __future__ import annotations

from typing import Any

from helpdesk import transaction
from helpdesk.accounts.models import Role
from helpdesk.brands.service import get_brand
from helpdesk.canned import service as canned
from helpdesk.canned.models import CannedReply
from helpdesk.dm.visibility import conversation_for
from helpdesk.errors import Forbidden, NotFound
from helpdesk.web.api import present
from helpdesk.web.api.auth import actor, brand_id, requires
from helpdesk.web.api.blueprint import api_blueprint
from helpdesk.web.api.errors import InvalidField
from helpdesk.web.api.inputs import (
    CannedInSchema,
    CannedPatchSchema,
    CannedQuerySchema,
    RenderInSchema,
)
from helpdesk.web.api.lookups import owned
from helpdesk.web.api.pagination import Order, paginate
from helpdesk.web.api.schemas import CannedReplySchema, RenderedSchema, page_of

bp = api_blueprint("canned_replies", "Canned replies (shared) and their rendering")

REPLIES = Order("canned", CannedReply.id, CannedReply.shortcode, str, descending=False)


@bp.route("/canned-replies", methods=["GET"])
@bp.arguments(CannedQuerySchema, location="query")
@bp.response(200, page_of(CannedReplySchema, "CannedReplyPage"))
def list_replies(args: dict[str, Any]) -> dict[str, Any]:
    """The brand's shared replies by shortcode; `q` matches a shortcode prefix or words."""
    rows, cursor = paginate(canned.shared_query(brand_id(), args.get("q", "")), REPLIES, args)
    return {"items": present.canned_replies(rows), "next_cursor": cursor}


@bp.route("/canned-replies", methods=["POST"])
@requires(Role.MANAGER)
@bp.arguments(CannedInSchema)
@bp.response(201, CannedReplySchema)
def create_reply(data: dict[str, Any]) -> dict[str, Any]:
    """A reply shared with the brand (speaking for the brand needs a manager token)."""
    reply = canned.create(
        get_brand(brand_id()),
        actor(),
        data["shortcode"],
        data.get("title"),
        data["body"],
        attachments=data["attachments"],
        shared=True,
    )
    transaction.commit()
    return canned.to_dict(reply)


@bp.route("/canned-replies/<id:reply_id>", methods=["GET"])
@bp.response(200, CannedReplySchema)
def get_reply(reply_id: int) -> dict[str, Any]:
    """One shared reply."""
    return canned.to_dict(owned(CannedReply, reply_id))


@bp.route("/canned-replies/<id:reply_id>", methods=["PATCH"])
@requires(Role.MANAGER)
@bp.arguments(CannedPatchSchema)
@bp.response(200, CannedReplySchema)
def patch_reply(data: dict[str, Any], reply_id: int) -> dict[str, Any]:
    """Change the given fields; the body is checked by the sandbox first."""
    reply = canned.update(owned(CannedReply, reply_id), actor(), **data)
    transaction.commit()
    return canned.to_dict(reply)


@bp.route("/canned-replies/<id:reply_id>", methods=["DELETE"])
@requires(Role.MANAGER)
@bp.response(204)
def delete_reply(reply_id: int) -> None:
    """Delete a shared reply."""
    canned.delete(owned(CannedReply, reply_id), actor())
    transaction.commit()


@bp.route("/canned-replies/<id:reply_id>/render", methods=["POST"])
@bp.arguments(RenderInSchema)
@bp.response(200, RenderedSchema)
def render_reply(data: dict[str, Any], reply_id: int) -> dict[str, Any]:
    """The reply filled in for a conversation (no agent: agent placeholders stay visible)."""
    reply = owned(CannedReply, reply_id)
    try:
        conversation = conversation_for(actor(), data["conversation_id"])
    except (NotFound, Forbidden):
        raise InvalidField("conversation_id", "no such conversation") from None
    result = canned.render(reply, conversation, None)
    transaction.commit()
    return {"text": result.text, "missing": result.missing, "too_long": result.too_long}
