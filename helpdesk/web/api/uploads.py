"""Agents' files for replies: `POST /api/v1/uploads` with a multipart `file`, answered with
`{id, type, url}`; a reply then names it as `{type, upload_id}` in its `attachments`."""

from __future__ import annotations

from typing import Any

from flask import request
from marshmallow import Schema, fields

from helpdesk import transaction
from helpdesk.media import uploads
from helpdesk.web.api.auth import brand_id
from helpdesk.web.api.blueprint import api_blueprint
from helpdesk.web.uploads import read_file

bp = api_blueprint("uploads", "Agents' files for replies")


class UploadSchema(Schema):
    id = fields.Integer(metadata={"description": "use it as `upload_id` in a reply's attachments"})
    type = fields.String(metadata={"description": "image, video, audio or file"})
    url = fields.String(
        metadata={"description": "the signed link the Send API fetches (no login, 24 hours)"}
    )
    name = fields.String(allow_none=True)
    size = fields.Integer()
    content_type = fields.String()


MULTIPART = {
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {"type": "string", "format": "binary"},
                    "type": {
                        "type": "string",
                        "enum": list(uploads.LIMITS),
                        "description": "send as this type (an mp4 as audio); default: by content",
                    },
                },
            }
        }
    }
}


@bp.route("/uploads", methods=["POST"])
@bp.doc(requestBody=MULTIPART)
@bp.response(201, UploadSchema)
def create_upload() -> dict[str, Any]:
    """Store a file within Meta's limits: images png, jpeg or gif up to 8 MB; videos mp4, ogg,
    avi, mov or webm, audio aac, m4a, wav or mp4, and PDF files up to 25 MB. The type is read
    from the bytes; too large is a 413, another type a 422, both naming the limit."""
    data, filename = read_file()
    kind = request.form.get("type") or None
    media = uploads.accept(brand_id(), data, filename, kind=kind)
    transaction.commit()
    return uploads.describe(media)
