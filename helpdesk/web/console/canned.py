"""JSON for the reply box: canned-reply search on `/`, rendering one, and `@mention` completion."""

from __future__ import annotations

from flask import jsonify, request
from flask.typing import ResponseReturnValue

from helpdesk import transaction
from helpdesk.canned import service as canned
from helpdesk.tickets import notes
from helpdesk.web.console import bp
from helpdesk.web.console.context import brand, conversation_or_404, me
from helpdesk.web.console.json import json_endpoint

PICKER_LIMIT = 8
PREVIEW_CHARS = 120


@bp.get("/canned/search")
@json_endpoint
def canned_search() -> ResponseReturnValue:
    replies = canned.search(brand().id, me(), request.args.get("q", "")[:100], limit=PICKER_LIMIT)
    return jsonify(
        items=[
            {
                "id": reply.id,
                "shortcode": reply.shortcode,
                "title": reply.title,
                "preview": reply.body[:PREVIEW_CHARS],
                "shared": reply.owner_id is None,
            }
            for reply in replies
        ]
    )


@bp.get("/canned/<int:reply_id>/render")
@json_endpoint
def canned_render(reply_id: int) -> ResponseReturnValue:
    """The reply filled for this conversation; `missing` lists placeholders left without a value
    so the box can flag them before sending."""
    conversation = conversation_or_404(request.args.get("conversation_id", default=0, type=int))
    reply = canned.get(reply_id, me(), brand_id=brand().id)
    result = canned.render(reply, conversation, me())
    transaction.commit()  # the use count, which orders the picker
    return jsonify(
        text=result.text,
        missing=result.missing,
        too_long=result.too_long,
        attachments=list(reply.attachments or []),
    )


@bp.get("/mentions")
@json_endpoint
def mention_candidates() -> ResponseReturnValue:
    return jsonify(items=notes.mention_candidates(brand().id, request.args.get("q", "")[:64], me()))
