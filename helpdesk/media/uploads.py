"""Agents' files for replies: accepted within Meta's limits per type, stored, and offered to the
Send API at `{PUBLIC_BASE_URL}/m/<signed token>`, which Meta fetches without a login.

Meta's limits for Instagram messaging attachments ("Upload Media for Instagram Messaging"):
images png, jpeg or gif up to 8 MB; videos mp4, ogg, avi, mov or webm up to 25 MB; audio aac,
m4a, wav or mp4 up to 25 MB; files pdf up to 25 MB. The type is read from the bytes, never from
the browser's Content-Type or the file's name. MB is taken as 1,000,000 bytes, the stricter
reading, so that a file accepted here is never refused by Meta for its size.

The link's token is signed (itsdangerous, a salt of its own) and binds the upload's id; it lives
24 hours (UPLOAD_LINK_MAX_AGE seconds), counted from when the link is made: when the message is
handed to the Send API.
"""

from __future__ import annotations

import hashlib
import secrets
import unicodedata
from dataclasses import dataclass
from typing import Any

import filetype
from flask import current_app
from itsdangerous import BadSignature, URLSafeTimedSerializer

from helpdesk.accounts.links import public_url
from helpdesk.errors import InvalidField
from helpdesk.extensions import db
from helpdesk.media.models import MediaObject, MediaOrigin, MediaStatus
from helpdesk.media.store import media_store
from helpdesk.types import utcnow

MB = 1_000_000
LINK_SALT = "helpdesk.media.upload-link"
LINK_MAX_AGE = 24 * 60 * 60


@dataclass(frozen=True)
class Limit:
    """What Meta takes for one attachment type: formats (as `filetype` names them) and size."""

    formats: tuple[str, ...]
    max_bytes: int
    words: str  # for refusals and the reply box: "png, jpeg or gif up to 8 MB"


LIMITS: dict[str, Limit] = {
    "image": Limit(("png", "jpg", "gif"), 8 * MB, "png, jpeg or gif up to 8 MB"),
    "video": Limit(
        ("mp4", "ogg", "avi", "mov", "webm"), 25 * MB, "mp4, ogg, avi, mov or webm up to 25 MB"
    ),
    "audio": Limit(("aac", "m4a", "wav", "mp4"), 25 * MB, "aac, m4a, wav or mp4 up to 25 MB"),
    "file": Limit(("pdf",), 25 * MB, "pdf up to 25 MB"),
}
# The type a format is sent as unless the uploader says otherwise (an mp4 may be sent as audio).
DEFAULT_KIND = {
    fmt: kind for kind in ("file", "audio", "video", "image") for fmt in LIMITS[kind].formats
}
MAX_BYTES = max(limit.max_bytes for limit in LIMITS.values())
# A multipart body carries the file and a little more (boundaries, headers, a CSRF token).
MAX_REQUEST_BYTES = MAX_BYTES + 64 * 1024
# How each format is served; an mp4 sent as audio is served as audio.
CONTENT_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "gif": "image/gif",
    "mp4": "video/mp4",
    "ogg": "video/ogg",
    "avi": "video/x-msvideo",
    "mov": "video/quicktime",
    "webm": "video/webm",
    "aac": "audio/aac",
    "m4a": "audio/mp4",
    "wav": "audio/wav",
    "pdf": "application/pdf",
}
ALL_FORMATS = (
    "images (png, jpeg, gif), videos (mp4, ogg, avi, mov, webm), audio (aac, m4a, wav, mp4) "
    "and PDF files"
)


class FileTooLarge(InvalidField):
    """The file is over Meta's limit for its type (answered 413, naming the limit)."""

    code = "too_large"
    status = 413


def too_large_for_any() -> FileTooLarge:
    """The body was cut off before it could be read: over the largest limit of all."""
    image = LIMITS["image"].max_bytes // MB
    return FileTooLarge(
        "file", f"Instagram takes files of at most {MAX_BYTES // MB} MB (images {image} MB)"
    )


def _format_of(data: bytes) -> tuple[str | None, str]:
    """The format the bytes are (as LIMITS names it), and words for a refusal."""
    guess = filetype.guess(data)
    if guess is None:
        return None, "of a type that cannot be recognised"
    extension = "png" if guess.extension == "apng" else guess.extension
    return (extension if extension in DEFAULT_KIND else None), f"{guess.mime}"


def _size(count: int) -> str:
    return f"{count / MB:.1f} MB"


def _clean_name(filename: str | None) -> str | None:
    """The name as shown to agents and in Content-Disposition: no folders, no control characters."""
    if not filename:
        return None
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
    return name[:255] or None


def check(data: bytes, kind: str | None = None) -> tuple[str, str]:
    """The attachment type and Content-Type of these bytes, or a refusal naming Meta's limit."""
    if not data:
        raise InvalidField("file", "the file is empty")
    fmt, seen = _format_of(data)
    if fmt is None:
        raise InvalidField("file", f"Instagram takes {ALL_FORMATS}; this file is {seen}")
    if kind is not None and kind not in LIMITS:
        raise InvalidField("type", "an attachment type is image, video, audio or file")
    kind = kind or DEFAULT_KIND[fmt]
    limit = LIMITS[kind]
    if fmt not in limit.formats:
        raise InvalidField("type", f"Instagram takes as {kind} {limit.words}; this file is {fmt}")
    if len(data) > limit.max_bytes:
        raise FileTooLarge(
            "file",
            f"Instagram takes {kind} files ({limit.words}); this one is {_size(len(data))}",
        )
    content_type = "audio/mp4" if (kind, fmt) == ("audio", "mp4") else CONTENT_TYPES[fmt]
    return kind, content_type


def accept(
    brand_id: int,
    data: bytes,
    filename: str | None = None,
    kind: str | None = None,
    agent_id: int | None = None,
) -> MediaObject:
    """Check an agent's file (or an integration's), store it and record it; the caller commits.

    Refused files store nothing and add no row."""
    kind, content_type = check(data, kind)
    key = f"{brand_id}/up/{secrets.token_hex(16)}"
    media = MediaObject(
        brand_id=brand_id,
        origin=MediaOrigin.UPLOAD,
        uploaded_by_id=agent_id,
        kind=kind,
        status=MediaStatus.STORED,
        filename=_clean_name(filename),
        storage_key=key,
        content_type=content_type,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        stored_at=utcnow(),
    )
    db.session.add(media)
    db.session.flush()
    media_store().put(key, data, content_type)
    return media


def describe(media: MediaObject) -> dict[str, Any]:
    """An upload as the API and the reply box show it."""
    return {
        "id": media.id,
        "type": media.kind,
        "url": signed_url(media),
        "name": media.filename,
        "size": media.size,
        "content_type": media.content_type,
    }


# Links Meta fetches -----------------------------------------------------------------------------


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=LINK_SALT)


def link_max_age() -> int:
    return int(current_app.config.get("UPLOAD_LINK_MAX_AGE", LINK_MAX_AGE))


def signed_url(media: MediaObject | int) -> str:
    """`{PUBLIC_BASE_URL}/m/<token>`: no login, unguessable, for link_max_age() seconds."""
    media_id = media if isinstance(media, int) else media.id
    token = _serializer().dumps({"media": media_id})
    return public_url("uploads.public_file", token=token)


def resolve(token: str) -> tuple[MediaObject, int] | None:
    """The stored upload a token names and the seconds it has left; None when forged, expired,
    purged or not an upload."""
    max_age = link_max_age()
    try:
        payload, signed_at = _serializer().loads(token, max_age=max_age, return_timestamp=True)
    except BadSignature:  # SignatureExpired is one
        return None
    media_id = payload.get("media") if isinstance(payload, dict) else None
    if not isinstance(media_id, int):
        return None
    media = db.session.get(MediaObject, media_id)
    if media is None or media.origin is not MediaOrigin.UPLOAD:
        return None
    if media.status is not MediaStatus.STORED or not media.storage_key:
        return None
    left = max_age - int((utcnow() - signed_at).total_seconds())
    return media, max(0, left)


# Uploads as attachments of a reply --------------------------------------------------------------


def _upload_id(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidField(field, "an upload id is a number")
    try:
        return int(value)
    except ValueError:
        raise InvalidField(field, "an upload id is a number") from None


def _owned_upload(brand_id: int, value: Any, field: str) -> MediaObject:
    upload_id = _upload_id(value, field)
    media = db.session.get(MediaObject, upload_id) if 0 < upload_id < 2**31 else None
    if media is None or media.brand_id != brand_id or media.origin is not MediaOrigin.UPLOAD:
        raise InvalidField(field, "no such upload")
    if media.status is not MediaStatus.STORED:
        raise InvalidField(field, "this upload was erased: upload the file again")
    if media.message_id is not None:
        raise InvalidField(field, "this upload was already sent with another message")
    return media


def attach(brand_id: int, attachments: list[dict]) -> list[dict]:
    """Each `{type, upload_id}` becomes the attachment the message keeps: the type, the upload's
    id (media_id) and its name and size; another brand's upload or a missing one is refused,
    naming the field. Attachments by URL pass as they are."""
    resolved = []
    for index, attachment in enumerate(attachments):
        if "upload_id" not in attachment:
            resolved.append(attachment)
            continue
        field = f"attachments.{index}.upload_id"
        media = _owned_upload(brand_id, attachment["upload_id"], field)
        given = attachment.get("type")
        if given is not None and given != media.kind:
            raise InvalidField(f"attachments.{index}.type", f"the upload is {media.kind}")
        resolved.append(
            {
                "type": media.kind,
                "upload_id": media.id,
                "media_id": media.id,
                "name": media.filename,
                "size": media.size,
            }
        )
    ids = [a["media_id"] for a in resolved if "media_id" in a]
    if len(ids) != len(set(ids)):
        raise InvalidField("attachments", "the same upload is attached twice")
    return resolved


def link_to_message(message_id: int, attachments: list[dict]) -> None:
    """The uploads now belong to the message: erasure, retention and the thread find them by it,
    and none is sent with a second message."""
    for index, attachment in enumerate(attachments):
        if "media_id" in attachment:
            media = db.session.get(MediaObject, attachment["media_id"])
            if media is not None:
                media.message_id = message_id
                media.attachment_index = index
    db.session.flush()


def owned_upload_or_none(brand_id: int, upload_id: Any) -> MediaObject | None:
    """For the reply box shown again after a refusal: the brand's stored upload, else None."""
    try:
        return _owned_upload(brand_id, upload_id, "upload_id")
    except InvalidField:
        return None
