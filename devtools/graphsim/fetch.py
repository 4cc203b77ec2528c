"""Meta fetches a sent attachment's URL itself (a plain GET: no cookies, no login) before it
accepts the message, and refuses the message when it cannot. The simulator does the same when
`fetch_attachments` is on (`graphsim serve` turns it on; tests turn it on over /_sim), and records
what it fetched (status, length, content type, digest) so a test sees what Meta would have seen.

Off by default in tests, where most attachments are made-up links nobody serves.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import httpx

from devtools.graphsim.state import SimState

USER_AGENT = "facebookexternalua"  # the agent Meta's fetcher announces itself as
MAX_BYTES = 25 * 1000 * 1000  # Meta's largest limit (video, audio, file)
TIMEOUT_SECONDS = 10.0
# The kind of Content-Type each attachment type must be served with (a file: anything).
MAJOR_TYPES = {"image": "image/", "video": "video/", "audio": "audio/"}


def _attachment(body: Any) -> dict | None:
    message = body.get("message") if isinstance(body, dict) else None
    attachment = message.get("attachment") if isinstance(message, dict) else None
    return attachment if isinstance(attachment, dict) else None


def _read(url: str) -> tuple[int, bytes, str | None]:
    """A fresh client each time: no cookie jar, no credentials, as a stranger on the Internet."""
    with httpx.Client(timeout=TIMEOUT_SECONDS, follow_redirects=True) as client:
        with client.stream("GET", url, headers={"User-Agent": USER_AGENT}) as response:
            data = b""
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) > MAX_BYTES:
                    break
            return response.status_code, data, response.headers.get("content-type")


def _problem(kind: str, status: int, data: bytes, content_type: str | None) -> str | None:
    """Why Meta would refuse what it got, or None."""
    if status != 200:
        return f"the URL answered {status}"
    if not data:
        return "the URL answered nothing"
    if len(data) > MAX_BYTES:
        return "the file is over 25 MB"
    major = MAJOR_TYPES.get(kind)
    if major and not (content_type or "").lower().startswith(major):
        return f"a {kind} served as {content_type or 'no content type'}"
    return None


def fetch_attachment(state: SimState, body: Any) -> dict | None:
    """Fetch the attachment of a Send API body when fetching is on; the record, or None."""
    attachment = _attachment(body)
    if not state.fetch_attachments or attachment is None:
        return None
    kind = str(attachment.get("type"))
    url = str((attachment.get("payload") or {}).get("url"))
    record: dict[str, Any] = {
        "url": url,
        "type": kind,
        "fetched_at": datetime.now(UTC).isoformat(),
        "status": None,
        "length": None,
        "content_type": None,
        "sha256": None,
        "ok": False,
        "error": None,
    }
    try:
        status, data, content_type = _read(url)
    except httpx.HTTPError as exc:
        record["error"] = f"{type(exc).__name__}: {exc}"
    else:
        record.update(
            status=status,
            length=len(data),
            content_type=content_type,
            sha256=hashlib.sha256(data).hexdigest(),
        )
        record["error"] = _problem(kind, status, data, content_type)
        record["ok"] = record["error"] is None
    with state.lock:
        state.fetches.append(record)
    return record
