"""Agents' files: the reply box's upload (a signed-in agent of the brand, with CSRF) and the
public link Meta fetches them at, `/m/<token>` (no login; the signed token is the key).

A file may be up to 25 MB, more than the app's MAX_CONTENT_LENGTH. The upload raises the limit
for its own request in a URL value preprocessor, because those run before every before_request
function, and the app's CSRF check (a before_request function) reads the form.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Blueprint, Flask, Response, abort, g, jsonify, request
from flask.typing import ResponseReturnValue
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import RequestEntityTooLarge

from helpdesk import transaction
from helpdesk.errors import DomainError, InvalidField
from helpdesk.extensions import login_manager
from helpdesk.media import uploads
from helpdesk.media.models import MediaObject
from helpdesk.media.store import MediaMissing, media_store
from helpdesk.web.console.context import brand, load_context, me
from helpdesk.web.console.json import json_endpoint

bp = Blueprint("uploads", __name__)


def read_file() -> tuple[bytes, str | None]:
    """The request's `file`, read within the largest of Meta's limits (413 past it)."""
    request.max_content_length = uploads.MAX_REQUEST_BYTES
    try:
        upload = request.files.get("file")
    except RequestEntityTooLarge:
        raise uploads.too_large_for_any() from None
    if upload is None:
        raise InvalidField("file", "choose a file to upload")
    data = upload.stream.read(uploads.MAX_BYTES + 1)
    if len(data) > uploads.MAX_BYTES:
        raise uploads.too_large_for_any()
    return data, upload.filename


def _error(refused: DomainError) -> tuple[Response, int]:
    transaction.rollback()
    body: dict[str, Any] = {"code": refused.code, "message": refused.message}
    fields = getattr(refused, "fields", None)
    if fields:
        body["fields"] = fields
    return jsonify(error=body), refused.status


def _signed_in_agent(
    view: Callable[..., ResponseReturnValue],
) -> Callable[..., ResponseReturnValue]:
    """As the console's views: signed in (else a 401 in JSON), the brand loaded."""

    @wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> ResponseReturnValue:
        if not current_user.is_authenticated:
            return login_manager.unauthorized()
        load_context()
        return view(*args, **kwargs)

    return guarded


@bp.url_value_preprocessor
def _room_for_a_file(endpoint: str | None, _values: dict[str, Any] | None) -> None:
    if endpoint == "uploads.console_upload":
        request.max_content_length = uploads.MAX_REQUEST_BYTES


@bp.errorhandler(RequestEntityTooLarge)
def _too_large(_refused: RequestEntityTooLarge) -> ResponseReturnValue:
    """Past the largest limit the body is not even read (the CSRF check would read it first)."""
    return _error(uploads.too_large_for_any())


@bp.errorhandler(CSRFError)
def _no_csrf(refused: CSRFError) -> ResponseReturnValue:
    return jsonify(error={"code": "csrf", "message": refused.description}), 400


@bp.post("/uploads")
@json_endpoint
@_signed_in_agent
def console_upload() -> ResponseReturnValue:
    """The reply box's file (picked, dropped or pasted): stored for the brand, answered with
    what the box shows and the id the reply form sends back as `upload_id`."""
    try:
        data, filename = read_file()
        media = uploads.accept(brand().id, data, filename, agent_id=me().id)
    except DomainError as refused:
        return _error(refused)
    transaction.commit()
    return jsonify(uploads.describe(media)), 201


@bp.get("/m/<token>")
def public_file(token: str) -> ResponseReturnValue:
    """An agent's upload, as Meta fetches it for the Send API: no login, and no caching beyond
    what the token has left; forged, expired or purged tokens are a plain 404."""
    found = uploads.resolve(token) if len(token) <= 512 else None
    if found is None:
        abort(404)
    media, seconds_left = found
    try:
        data = media_store().get(media.storage_key or "")
    except MediaMissing:
        abort(404)
    response = Response(data, mimetype=media.content_type or "application/octet-stream")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = f"private, max-age={seconds_left}"
    response.headers["X-Robots-Tag"] = "noindex"
    if media.kind == "file" and media.filename:
        response.headers.set("Content-Disposition", "inline", filename=media.filename)
    return response


def upload_of(upload_id: Any) -> MediaObject | None:
    """For templates: the current brand's upload not yet sent (the reply box shown again)."""
    current = g.get("brand")
    return uploads.owned_upload_or_none(current.id, upload_id) if current else None


def init_uploads(app: Flask) -> None:
    app.register_blueprint(bp)
    app.add_template_global(upload_of, "upload_of")
