"""Meta's Instagram webhook format, read into plain events. Parsing never touches the database."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from helpdesk.dm.models import MessageKind

SECONDS_LIMIT = 10**12  # below this a timestamp is in seconds, above it in milliseconds
_URL = re.compile(r"https?://\S+", re.IGNORECASE)
_MAX_TIMESTAMP_MS = 253402300799999  # 9999-12-31

REACTION_EMOJI = {
    "love": "❤️",
    "like": "👍",
    "haha": "😂",
    "wow": "😮",
    "sad": "😢",
    "angry": "😠",
    "smile": "😊",
    "other": "❔",
}

_ATTACHMENT_KINDS = {
    "image": MessageKind.IMAGE,
    "video": MessageKind.VIDEO,
    "audio": MessageKind.AUDIO,
    "file": MessageKind.FILE,
    "share": MessageKind.SHARE,
    "ig_post": MessageKind.SHARE,
    "ig_reel": MessageKind.SHARE,
    "reel": MessageKind.SHARE,
    "story_mention": MessageKind.STORY_MENTION,
    "ig_story": MessageKind.STORY_REPLY,
    "story": MessageKind.STORY_REPLY,
    "ephemeral": MessageKind.IMAGE,
    "location": MessageKind.LOCATION,
    "product": MessageKind.PRODUCT,
    "template": MessageKind.PRODUCT,
    "fallback": MessageKind.LINK,
}


class MalformedEvent(ValueError):
    """An event that does not have the shape Meta sends; stored, reported, skipped."""


@dataclass(frozen=True)
class Event:
    """One event of a delivery, for one business account."""

    account_id: str
    type: str  # message, echo, unsend, edit, reaction, read, postback, referral
    sender_id: str
    recipient_id: str
    at: datetime
    mid: str | None = None
    text: str | None = None
    kind: MessageKind = MessageKind.TEXT
    attachments: list[dict] = field(default_factory=list)
    reply_to_mid: str | None = None
    extra: dict = field(default_factory=dict)
    num_edit: int | None = None
    emoji: str | None = None


def parse_timestamp(value: Any) -> datetime:
    """Milliseconds, or seconds when below 10^12; anything else is malformed."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise MalformedEvent("timestamp is not a number")
    try:
        number = float(value)
    except ValueError as exc:
        raise MalformedEvent("timestamp is not a number") from exc
    if number != number or number < 0:
        raise MalformedEvent("timestamp out of range")
    millis = number * 1000 if number < SECONDS_LIMIT else number
    if millis > _MAX_TIMESTAMP_MS:
        raise MalformedEvent("timestamp out of range")
    return datetime.fromtimestamp(millis / 1000, tz=UTC)


def entries(body: Any) -> list[dict]:
    """The entries of a delivery: `{"entry": [...]}`, or a top-level list of bodies or entries."""
    if isinstance(body, dict):
        items = body.get("entry", [])
        return [e for e in items if isinstance(e, dict)] if isinstance(items, list) else []
    if isinstance(body, list):
        found: list[dict] = []
        for item in body:
            if isinstance(item, dict) and "entry" in item:
                found.extend(entries(item))
            elif isinstance(item, dict):
                found.append(item)
        return found
    return []


def raw_events(entry: dict) -> list[dict]:
    """`messaging`, `standby` and the dashboard's `changes` test shape, as messaging events."""
    events: list[dict] = []
    for key in ("messaging", "standby"):
        items = entry.get(key)
        if isinstance(items, list):
            events.extend(e for e in items if isinstance(e, dict))
    changes = entry.get("changes")
    if isinstance(changes, list):
        for change in changes:
            if isinstance(change, dict) and isinstance(change.get("value"), dict):
                events.append(change["value"])
    return events


def _str_id(container: Any, key: str) -> str:
    value = container.get(key) if isinstance(container, dict) else None
    value = value.get("id") if isinstance(value, dict) else None
    if isinstance(value, bool) or not isinstance(value, str | int) or str(value) == "":
        raise MalformedEvent(f"{key}.id is missing")
    return str(value)[:64]


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _mid(value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > 255:
        raise MalformedEvent("mid is missing")
    return value


def _attachments(items: Any) -> list[dict]:
    """Meta's attachments as ours; a `share` and an `ig_post` of the same media are one."""
    if not isinstance(items, list):
        return []
    result: list[dict] = []
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            continue
        payload = item.get("payload") if isinstance(item.get("payload"), dict) else {}
        url = payload.get("url") if isinstance(payload.get("url"), str) else None
        if url and not url.lower().startswith(("https://", "http://")):
            url = None
        kind = item["type"]
        media = payload.get("ig_post_media_id") or payload.get("reel_video_id") or url
        if kind in ("share", "ig_post", "ig_reel", "reel") and media:
            if str(media) in seen:
                continue
            seen.add(str(media))
            kind = "share"
        attachment = {"type": kind, "url": url}
        for key in ("title", "ig_post_media_id", "reel_video_id", "sticker_id", "id"):
            if isinstance(payload.get(key), str | int) and not isinstance(payload.get(key), bool):
                attachment[key] = payload[key]
        result.append(attachment)
    return result


def _kind(text: str | None, attachments: list[dict], message: dict) -> MessageKind:
    if message.get("is_unsupported"):
        return MessageKind.UNSUPPORTED
    reply_to = message.get("reply_to")
    if isinstance(reply_to, dict) and isinstance(reply_to.get("story"), dict):
        return MessageKind.STORY_REPLY
    if attachments:
        first = attachments[0]
        if first["type"] == "image" and first.get("sticker_id"):
            return MessageKind.STICKER
        if first["type"] == "image" and (first.get("url") or "").split("?")[0].endswith(".gif"):
            return MessageKind.GIF
        return _ATTACHMENT_KINDS.get(first["type"], MessageKind.UNSUPPORTED)
    if text and _URL.search(text):
        return MessageKind.LINK
    return MessageKind.TEXT


def parse_event(account_id: str, raw: dict) -> Event:
    """One messaging event as an Event; raises MalformedEvent for anything Meta would not send."""
    sender_id = _str_id(raw, "sender")
    recipient_id = _str_id(raw, "recipient")
    at = parse_timestamp(raw.get("timestamp"))
    base = {
        "account_id": account_id,
        "sender_id": sender_id,
        "recipient_id": recipient_id,
        "at": at,
    }

    message = raw.get("message")
    if isinstance(message, dict):
        mid = _mid(message.get("mid"))
        if message.get("is_deleted"):
            return Event(type="unsend", mid=mid, **base)
        text = _text(message.get("text"))
        attachments = _attachments(message.get("attachments"))
        reply_to = message.get("reply_to") if isinstance(message.get("reply_to"), dict) else {}
        extra: dict = {}
        if isinstance(reply_to.get("story"), dict):
            story = reply_to["story"]
            extra["story"] = {
                k: story.get(k) for k in ("url", "id") if isinstance(story.get(k), str)
            }
        for key in ("quick_reply", "referral"):
            if isinstance(message.get(key), dict):
                extra[key] = message[key]
        if message.get("app_id") is not None:
            extra["app_id"] = str(message["app_id"])[:64]
        return Event(
            type="echo" if message.get("is_echo") else "message",
            mid=mid,
            text=text,
            kind=_kind(text, attachments, message),
            attachments=attachments,
            reply_to_mid=reply_to.get("mid") if isinstance(reply_to.get("mid"), str) else None,
            extra=extra,
            **base,
        )
    edit = raw.get("message_edit")
    if isinstance(edit, dict):
        num_edit = edit.get("num_edit")
        if not isinstance(num_edit, int) or isinstance(num_edit, bool) or not 0 < num_edit < 10**6:
            raise MalformedEvent("num_edit out of range")
        return Event(
            type="edit",
            mid=_mid(edit.get("mid")),
            text=_text(edit.get("text")) or "",
            num_edit=num_edit,
            **base,
        )
    reaction = raw.get("reaction")
    if isinstance(reaction, dict):
        action = reaction.get("action")
        if action not in ("react", "unreact"):
            raise MalformedEvent("reaction.action is react or unreact")
        emoji = _text(reaction.get("emoji")) or REACTION_EMOJI.get(
            str(reaction.get("reaction")), "❤️"
        )
        return Event(
            type="reaction" if action == "react" else "unreaction",
            mid=_mid(reaction.get("mid")),
            emoji=emoji[:32],
            **base,
        )
    read = raw.get("read")
    if isinstance(read, dict):
        return Event(type="read", mid=_mid(read.get("mid")), **base)
    postback = raw.get("postback")
    if isinstance(postback, dict):
        title = _text(postback.get("title")) or _text(postback.get("payload")) or "postback"
        return Event(
            type="postback",
            mid=_mid(postback.get("mid")),
            text=title,
            kind=MessageKind.POSTBACK,
            extra={"payload": _text(postback.get("payload"))},
            **base,
        )
    referral = raw.get("referral")
    if isinstance(referral, dict):
        return Event(type="referral", extra={"referral": referral}, **base)
    raise MalformedEvent("unknown event type")
