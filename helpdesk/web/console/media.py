"""Stored media for the console: `/media/<id>` and its thumbnail, for signed-in agents of the
medium's brand who may read the message that carries it; anything else is a 404, like no row.

The bytes are a stranger's: the type sent is the one sniffed when they were copied, browsers are
told not to guess another (nosniff), a file is a download rather than a page, and the response
runs sandboxed if a browser renders it anyway. Caching is private: a shared proxy keeps nothing.
"""

from __future__ import annotations

import io
import mimetypes

from flask import abort, send_file
from flask.typing import ResponseReturnValue

from helpdesk.dm import visibility
from helpdesk.dm.models import Message
from helpdesk.errors import Forbidden, NotFound
from helpdesk.extensions import db
from helpdesk.media import copies
from helpdesk.media.models import MediaObject, MediaStatus
from helpdesk.media.store import MediaMissing
from helpdesk.media.thumbnails import CONTENT_TYPE as THUMBNAIL_TYPE
from helpdesk.web.console import bp
from helpdesk.web.console.context import actor, brand

INLINE = ("image/", "video/", "audio/")
MAX_AGE_SECONDS = 3600


@bp.get("/media/<int:media_id>")
def media(media_id: int) -> ResponseReturnValue:
    return _serve(_media_or_404(media_id), thumbnail=False)


@bp.get("/media/<int:media_id>/thumbnail")
def media_thumbnail(media_id: int) -> ResponseReturnValue:
    return _serve(_media_or_404(media_id), thumbnail=True)


def _media_or_404(media_id: int) -> MediaObject:
    media = db.session.get(MediaObject, media_id)
    if media is None or media.brand_id != brand().id or media.status is not MediaStatus.STORED:
        abort(404)
    if media.message_id is not None and not _may_read(media.message_id):
        abort(404)
    return media


def _may_read(message_id: int) -> bool:
    """The carrying message is shown to this agent: not a blocked contact's, not a vanish-mode
    message nobody revealed, not in a hidden request below its role."""
    message = db.session.get(Message, message_id)
    if message is None or message.suppressed or message.awaiting_reveal:
        return False
    try:
        visibility.conversation_for(actor(), message.conversation_id)
    except (NotFound, Forbidden):
        return False
    return True


def _serve(media: MediaObject, thumbnail: bool) -> ResponseReturnValue:
    try:
        data = copies.read(media, thumbnail_wanted=thumbnail)
    except MediaMissing:
        abort(404)
    content_type = THUMBNAIL_TYPE if thumbnail else media.content_type or "application/octet-stream"
    extension = mimetypes.guess_extension(content_type) or ".bin"
    response = send_file(
        io.BytesIO(data),
        mimetype=content_type,
        as_attachment=not content_type.startswith(INLINE),
        download_name=f"media-{media.id}{'-thumbnail' if thumbnail else ''}{extension}",
        conditional=True,  # ranges, so a video can be scrubbed
        max_age=MAX_AGE_SECONDS,
        etag=media.sha256 or False,
    )
    response.cache_control.public = False
    response.cache_control.private = True
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response
