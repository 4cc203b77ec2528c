"""Meta's Instagram webhook format, read into plain events. Parsing never touches the database."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from helpdesk.dm.models import MessageKind

SECONDS_LIMIT = 10**12  # below this a timestamp is in seconds, above it in milliseconds
_URL = re.compile(r"https?://\S+", re.IGNORECASE)
_MAX_TIMESTAMP_MS = 253402300799999  # 9999-12-31
_COUNT = re.compile(r"[0-9]{1,7}")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")  # a date with a time of day
MAX_MID_CHARS = 255  # the mid columns
# As for the API's intake. Meta sends at most 1000; far longer would pass PostgreSQL's size limit
# of the full-text index on message text, and the message could never be stored.
MAX_TEXT_CHARS = 20_000
_PLAIN_DEPTH = 4  # how deep a free-form object (quick_reply, referral) is kept

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
    "like_heart": MessageKind.STICKER,  # the heart sticker: no image, shown as ❤️
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
    """Milliseconds, or seconds when below 10^12, as a number or in a string; some deliveries
    give ISO-8601 text instead (UTC when it names no zone). Anything else is malformed."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise MalformedEvent("timestamp is not a number")
    try:
        number = float(value)
    except ValueError as exc:
        return _iso_timestamp(value, exc)
    except OverflowError as exc:  # an int past a float's range
        raise MalformedEvent("timestamp is not a number") from exc
    if number != number or number < 0:
        raise MalformedEvent("timestamp out of range")
    millis = number * 1000 if number < SECONDS_LIMIT else number
    if millis > _MAX_TIMESTAMP_MS:
        raise MalformedEvent("timestamp out of range")
    return datetime.fromtimestamp(millis / 1000, tz=UTC)


def _iso_timestamp(value: Any, cause: Exception) -> datetime:
    if not isinstance(value, str) or not _ISO_DATE.match(value.strip()):
        raise MalformedEvent("timestamp is not a number or a date") from cause
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise MalformedEvent("timestamp is not a number or a date") from exc
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def clean(text: str) -> str:
    """Text every database stores: JSON may escape a NUL or a lone surrogate, which PostgreSQL
    (NUL) and the UTF-8 codecs (surrogates) refuse; the NUL goes, the surrogate becomes U+FFFD."""
    text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def _plain(value: Any, depth: int = _PLAIN_DEPTH) -> Any:
    """A free-form JSON value as it may be stored: clean text, finite numbers, a few levels."""
    if isinstance(value, str):
        return clean(value)
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth <= 0:
        return None
    if isinstance(value, dict):
        return {clean(str(k)): _plain(v, depth - 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v, depth - 1) for v in value]
    return None


def _account_id(entry: dict) -> dict:
    """The entry with its `id` as clean text of at most 64 characters, or without one."""
    value = entry.get("id")
    entry = dict(entry)
    if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
        entry["id"] = clean(str(value))[:64]
    else:
        entry.pop("id", None)
    return entry


def entries(body: Any) -> list[dict]:
    """The entries of a delivery: `{"entry": [...]}`, or a top-level list of bodies or entries.
    Each entry's `id` (the business account) is text, or missing when it has another shape."""
    if isinstance(body, dict):
        items = body.get("entry", [])
        if not isinstance(items, list):
            return []
        return [_account_id(e) for e in items if isinstance(e, dict)]
    if isinstance(body, list):
        found: list[dict] = []
        for item in body:
            if isinstance(item, dict) and "entry" in item:
                found.extend(entries(item))
            elif isinstance(item, dict):
                found.append(_account_id(item))
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


def _party(raw: dict, key: str, default: str | None) -> str:
    if default is not None and not isinstance(raw.get(key), dict):
        return default
    return _str_id(raw, key)


def _moment(value: Any, optional: bool) -> datetime:
    return datetime.now(UTC) if value is None and optional else parse_timestamp(value)


def _str_id(container: Any, key: str) -> str:
    value = container.get(key) if isinstance(container, dict) else None
    value = value.get("id") if isinstance(value, dict) else None
    if isinstance(value, bool) or not isinstance(value, str | int) or clean(str(value)) == "":
        raise MalformedEvent(f"{key}.id is missing")
    return clean(str(value))[:64]


def _text(value: Any) -> str | None:
    return clean(value) if isinstance(value, str) else None


def _body_text(value: Any) -> str | None:
    text = _text(value)
    return text[:MAX_TEXT_CHARS] if text is not None else None


def _mid(value: Any) -> str:
    value = _text(value)
    if not value or len(value) > MAX_MID_CHARS:
        raise MalformedEvent("mid is missing")
    return value


def _reply_to_mid(value: Any) -> str | None:
    """A quoted message's mid; one too long to be any message's is no quote."""
    value = _text(value)
    return value if value and len(value) <= MAX_MID_CHARS else None


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
        # A story's media comes as `story_media_url` rather than `url` in some deliveries.
        url = _text(payload.get("url")) or _text(payload.get("story_media_url"))
        if url and not url.lower().startswith(("https://", "http://")):
            url = None
        kind = clean(item["type"])
        media = payload.get("ig_post_media_id") or payload.get("reel_video_id") or url
        if kind in ("share", "ig_post", "ig_reel", "reel") and media:
            if str(media) in seen:
                continue
            seen.add(str(media))
            kind = "share"
        attachment = {"type": kind, "url": url}
        for key in ("title", "ig_post_media_id", "reel_video_id", "sticker_id", "id", "story_id"):
            if isinstance(payload.get(key), str | int) and not isinstance(payload.get(key), bool):
                attachment[key] = _plain(payload[key])
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


def _message_event(message: dict, base: dict) -> Event:
    """A customer's message, or an echo of the brand's; a deleted one is an unsend."""
    mid = _mid(message.get("mid"))
    if message.get("is_deleted"):
        return Event(type="unsend", mid=mid, **base)
    text = _body_text(message.get("text"))
    attachments = _attachments(message.get("attachments"))
    if text is None and attachments and attachments[0]["type"] == "like_heart":
        text = "❤️"
    reply_to = message.get("reply_to") if isinstance(message.get("reply_to"), dict) else {}
    return Event(
        type=_message_type(message, base),
        mid=mid,
        text=text,
        kind=_kind(text, attachments, message),
        attachments=attachments,
        reply_to_mid=_reply_to_mid(reply_to.get("mid")),
        extra=_message_extra(message, reply_to),
        **base,
    )


def _message_type(message: dict, base: dict) -> str:
    """The brand is never a contact. What it sends to itself (`is_self`, or an echo addressed to
    its own account) belongs to no conversation: `self`, which the intake ignores. A message from
    its account id is an echo even without the flag; an echo's customer is its recipient, so one
    sent under another id of the brand (its app-scoped id) still lands in the customer's thread."""
    sender, recipient, brand = base["sender_id"], base["recipient_id"], base["account_id"]
    echo = bool(message.get("is_echo")) or sender == brand
    if message.get("is_self") or sender == recipient or (echo and recipient == brand):
        return "self"
    return "echo" if echo else "message"


def _message_extra(message: dict, reply_to: dict) -> dict:
    """What a message carries besides its content: the story it answers, a quick reply, a
    referral, the app that sent it."""
    extra: dict = {}
    if isinstance(reply_to.get("story"), dict):
        story = reply_to["story"]
        extra["story"] = {
            k: clean(story[k]) for k in ("url", "id") if isinstance(story.get(k), str)
        }
    for key in ("quick_reply", "referral"):
        if isinstance(message.get(key), dict):
            extra[key] = _plain(message[key])
    app_id = message.get("app_id")
    if isinstance(app_id, str | int) and not isinstance(app_id, bool):
        extra["app_id"] = clean(str(app_id))[:64]
    return extra


def _edit_event(edit: dict, base: dict) -> Event:
    return Event(
        type="edit",
        mid=_mid(edit.get("mid")),
        text=_body_text(edit.get("text")) or "",
        num_edit=_num_edit(edit.get("num_edit")),
        **base,
    )


def _num_edit(value: Any) -> int | None:
    """Meta's count of edits, a number or a number in a string ("1"). Some deliveries say 0:
    no usable count (None), and the edit is told from others by its time instead."""
    if isinstance(value, str) and _COUNT.fullmatch(value.strip()):
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 10**6:
        raise MalformedEvent("num_edit out of range")
    return value or None


def _reaction_event(reaction: dict, base: dict) -> Event:
    action = reaction.get("action")
    if action not in ("react", "unreact"):
        raise MalformedEvent("reaction.action is react or unreact")
    name = reaction.get("reaction")
    emoji = _text(reaction.get("emoji")) or REACTION_EMOJI.get(
        name if isinstance(name, str) else "", "❤️"
    )
    return Event(
        type="reaction" if action == "react" else "unreaction",
        mid=_mid(reaction.get("mid")),
        emoji=emoji[:32],
        **base,
    )


def _read_event(read: dict, base: dict) -> Event:
    return Event(type="read", mid=_mid(read.get("mid")), **base)


def _postback_event(postback: dict, base: dict) -> Event:
    title = _body_text(postback.get("title")) or _body_text(postback.get("payload"))
    mid = postback.get("mid")
    return Event(
        type="postback",
        mid=_mid(mid) if mid is not None else _postback_mid(postback, base),
        text=title or "postback",
        kind=MessageKind.POSTBACK,
        extra=_postback_extra(title, _text(postback.get("payload"))),
        **base,
    )


def _postback_mid(postback: dict, base: dict) -> str:
    """Ice breakers and "Get started" come without a `mid`: one derived from who tapped what and
    when, so that Meta's retries of the delivery store the tap once."""
    tapped = postback.get("payload")
    tapped = postback.get("title") if tapped is None else tapped
    parts = [base["sender_id"], base["at"].isoformat(), json.dumps(tapped, sort_keys=True)]
    return "postback:" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def _postback_extra(title: str | None, payload: str | None) -> dict:
    """`payload` as before; `postback` as the console and the API show it (title and payload)."""
    return {"payload": payload, "postback": {"title": title, "payload": payload}}


def _referral_event(referral: dict, base: dict) -> Event:
    return Event(type="referral", extra={"referral": _plain(referral)}, **base)


_CUSTOMERS_ONLY = ("reaction", "unreaction", "read", "postback", "referral")

# Meta names an event's kind by the key that carries it: the first of these whose value is an
# object decides, in this order.
_PARSERS: dict[str, Callable[[dict, dict], Event]] = {
    "message": _message_event,
    "message_edit": _edit_event,
    "reaction": _reaction_event,
    "read": _read_event,
    "postback": _postback_event,
    "referral": _referral_event,
}


def parse_event(account_id: str, raw: dict) -> Event:
    """One messaging event as an Event; raises MalformedEvent for anything Meta would not send.

    Some deliveries carry a `read` as `{"read": {"mid"}}` alone: it names the brand's message,
    which is enough to apply it, so its sender, recipient and time may be missing."""
    only_read = next((k for k in _PARSERS if isinstance(raw.get(k), dict)), None) == "read"
    base = {
        "account_id": account_id,
        "sender_id": _party(raw, "sender", "" if only_read else None),
        "recipient_id": _party(raw, "recipient", account_id if only_read else None),
        "at": _moment(raw.get("timestamp"), optional=only_read),
    }
    for key, parse in _PARSERS.items():
        body = raw.get(key)
        if isinstance(body, dict):
            event = parse(body, base)
            if event.type in _CUSTOMERS_ONLY and event.sender_id == account_id:
                return replace(event, type="self")  # the brand's own: it is never a contact
            return event
    raise MalformedEvent("unknown event type")
