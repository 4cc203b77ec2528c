"""Instagram webhook deliveries as Meta sends them: built, signed over the exact bytes, posted.

Bodies follow the examples in tests/fixtures/webhooks/ (the format: docs/webhook.md). Non-ASCII
characters are escaped (`\\u00e4`) as in Meta's own bytes, so a receiver that re-serialises
before checking the signature fails here as it would in production.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

WEBHOOK_PATH = "/webhooks/instagram"
DEMO_ACCOUNT_ID = "17841400000000001"


@dataclass(frozen=True)
class Posted:
    """What was delivered: the body as sent, its mid (when it carries one) and the app's answer."""

    body: dict
    raw: bytes
    status_code: int
    response_text: str
    mid: str | None = None


def sign(raw: bytes, app_secret: str) -> str:
    """The `X-Hub-Signature-256` value Meta computes over the raw body."""
    return "sha256=" + hmac.new(app_secret.encode(), raw, hashlib.sha256).hexdigest()


def webhook_url(app_url: str) -> str:
    """Accept the app's base URL or the full webhook URL."""
    if urlsplit(app_url).path in ("", "/"):
        return app_url.rstrip("/") + WEBHOOK_PATH
    return app_url


def now_ms() -> int:
    return int(time.time() * 1000)


def new_mid(prefix: str = "m_sim_in_") -> str:
    return prefix + secrets.token_urlsafe(24)


def envelope(account_id: str, events: list[dict], time_ms: int | None = None) -> dict:
    """One delivery for one business account: `{"object": "instagram", "entry": [...]}`."""
    return {
        "object": "instagram",
        "entry": [{"id": str(account_id), "time": time_ms or now_ms(), "messaging": events}],
    }


def event(sender_id: str, recipient_id: str, timestamp_ms: int | None = None, **fields) -> dict:
    return {
        "sender": {"id": str(sender_id)},
        "recipient": {"id": str(recipient_id)},
        "timestamp": timestamp_ms or now_ms(),
        **fields,
    }


def meta_attachment(attachment: dict) -> dict:
    """`{"type", "url"}` (the app's shorthand) or Meta's `{"type", "payload": {...}}`."""
    if "payload" in attachment:
        return {"type": attachment["type"], "payload": dict(attachment["payload"])}
    payload = {key: value for key, value in attachment.items() if key != "type"}
    return {"type": attachment["type"], "payload": payload}


def message_fields(
    mid: str,
    text: str | None = None,
    attachments: list[dict] | None = None,
    reply_to_mid: str | None = None,
    is_echo: bool = False,
    app_id: str | None = None,
    **extra: Any,
) -> dict:
    message: dict[str, Any] = {"mid": mid}
    if text is not None:
        message["text"] = text
    if attachments:
        message["attachments"] = [meta_attachment(a) for a in attachments]
    if reply_to_mid:
        message["reply_to"] = {"mid": reply_to_mid}
    if is_echo:
        message["is_echo"] = True
    if app_id:
        message["app_id"] = app_id
    message.update(extra)
    return message


def post_webhook(app_url: str, app_secret: str, body: dict, timeout: float = 10.0) -> Posted:
    """Serialise once, sign those bytes, post them; `mid` is the first event's message mid."""
    raw = json.dumps(body).encode()
    response = httpx.post(
        webhook_url(app_url),
        content=raw,
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": sign(raw, app_secret)},
        timeout=timeout,
    )
    return Posted(body, raw, response.status_code, response.text, _first_mid(body))


def _first_mid(body: dict) -> str | None:
    for entry in body.get("entry", []):
        for item in entry.get("messaging", []):
            for key in ("message", "message_edit", "reaction", "read", "postback"):
                if isinstance(item.get(key), dict) and item[key].get("mid"):
                    return item[key]["mid"]
    return None


def send_dm(
    app_url: str,
    app_secret: str,
    account_id: str = DEMO_ACCOUNT_ID,
    sender_id: str = "6120000000000001",
    text: str | None = None,
    attachments: list[dict] | None = None,
    mid: str | None = None,
    timestamp_ms: int | None = None,
    reply_to_mid: str | None = None,
    story: dict | None = None,
    quick_reply_payload: str | None = None,
) -> Posted:
    """A customer's DM to the brand's account, as Meta's webhook carries it."""
    extra: dict[str, Any] = {}
    if quick_reply_payload is not None:
        extra["quick_reply"] = {"payload": quick_reply_payload}
    message = message_fields(mid or new_mid(), text, attachments, reply_to_mid, **extra)
    if story is not None:
        message["reply_to"] = {"story": dict(story)}
    body = envelope(account_id, [event(sender_id, account_id, timestamp_ms, message=message)])
    return post_webhook(app_url, app_secret, body)


def send_echo(
    app_url: str,
    app_secret: str,
    account_id: str,
    recipient_id: str,
    text: str | None = None,
    attachments: list[dict] | None = None,
    mid: str | None = None,
    timestamp_ms: int | None = None,
    app_id: str | None = None,
) -> Posted:
    """The brand's own message seen from Meta: from the Instagram app (no `app_id`) or the API."""
    message = message_fields(
        mid or new_mid("m_sim_echo_"), text, attachments, is_echo=True, app_id=app_id
    )
    body = envelope(account_id, [event(account_id, recipient_id, timestamp_ms, message=message)])
    return post_webhook(app_url, app_secret, body)


def send_reaction(
    app_url: str,
    app_secret: str,
    account_id: str,
    sender_id: str,
    mid: str,
    emoji: str = "❤️",
    reaction: str = "love",
    timestamp_ms: int | None = None,
) -> Posted:
    fields = {"mid": mid, "action": "react", "reaction": reaction, "emoji": emoji}
    body = envelope(account_id, [event(sender_id, account_id, timestamp_ms, reaction=fields)])
    return post_webhook(app_url, app_secret, body)


def send_unreact(
    app_url: str,
    app_secret: str,
    account_id: str,
    sender_id: str,
    mid: str,
    timestamp_ms: int | None = None,
) -> Posted:
    fields = {"mid": mid, "action": "unreact"}
    body = envelope(account_id, [event(sender_id, account_id, timestamp_ms, reaction=fields)])
    return post_webhook(app_url, app_secret, body)


def send_edit(
    app_url: str,
    app_secret: str,
    account_id: str,
    sender_id: str,
    mid: str,
    text: str,
    num_edit: int = 1,
    timestamp_ms: int | None = None,
) -> Posted:
    fields = {"mid": mid, "text": text, "num_edit": num_edit}
    body = envelope(account_id, [event(sender_id, account_id, timestamp_ms, message_edit=fields)])
    return post_webhook(app_url, app_secret, body)


def send_unsend(
    app_url: str,
    app_secret: str,
    account_id: str,
    sender_id: str,
    mid: str,
    timestamp_ms: int | None = None,
) -> Posted:
    fields = {"mid": mid, "is_deleted": True}
    body = envelope(account_id, [event(sender_id, account_id, timestamp_ms, message=fields)])
    return post_webhook(app_url, app_secret, body)


def send_read(
    app_url: str,
    app_secret: str,
    account_id: str,
    sender_id: str,
    mid: str,
    timestamp_ms: int | None = None,
) -> Posted:
    body = envelope(account_id, [event(sender_id, account_id, timestamp_ms, read={"mid": mid})])
    return post_webhook(app_url, app_secret, body)
