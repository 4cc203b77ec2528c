"""What an outbound text may be: Instagram's byte limit, no leftovers of the composer, and the
reply window said in words an agent understands."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from helpdesk.errors import ValidationError

MAX_TEXT_BYTES = 1000
# What a canned reply leaves in the text when it had no value for a placeholder.
UNFILLED = re.compile(r"\{\{\s*(?:contact|agent|brand|ticket)\.\w+\s*\}\}")
# A canned-reply search that was never completed: "/" or "/refund" alone.
LONE_SHORTCODE = re.compile(r"/[\w-]*")
SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|\n+")


def byte_length(text: str) -> int:
    return len(text.encode())


def normalise(text: str | None) -> str | None:
    """Line breaks as the customer's app shows them, no trailing blank space; empty is None."""
    if text is None:
        return None
    text = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    return text or None


def check_sendable(text: str | None) -> None:
    """Refuse what would reach the customer by mistake; the agent's words are kept by the
    caller."""
    if text is None:
        return
    if LONE_SHORTCODE.fullmatch(text):
        raise ValidationError(
            f"“{text}” alone would reach the customer as it is: pick a canned reply from the "
            "list, or write a message."
        )
    if UNFILLED.search(text):
        raise ValidationError(
            "Fill in the highlighted {{ placeholders }} first: the canned reply had no value "
            "for them."
        )
    size = byte_length(text)
    if size > MAX_TEXT_BYTES:
        parts = len(split_text(text))
        raise ValidationError(
            f"This message is {size} bytes; Instagram takes at most {MAX_TEXT_BYTES} bytes per "
            f"message (an emoji counts 4). Shorten it, or send it as {parts} messages."
        )


def split_text(text: str, limit: int = MAX_TEXT_BYTES) -> list[str]:
    """Parts of at most `limit` bytes, cut between sentences where possible, else between
    words, else between characters; only the white space at a cut is dropped."""
    parts: list[str] = []
    current = ""
    for separator, piece in _pieces(text, limit):
        candidate = f"{current}{separator}{piece}" if current else piece
        if byte_length(candidate) <= limit:
            current = candidate
        else:
            parts.append(current)
            current = piece
    if current:
        parts.append(current)
    return parts


def _pieces(text: str, limit: int) -> list[tuple[str, str]]:
    """(separator before it, piece): sentences within the limit, longer ones as words, longer
    words as runs of whole characters."""
    pieces: list[tuple[str, str]] = []
    tokens = SENTENCE_END.split(text)
    separators = [""] + SENTENCE_END.findall(text)
    for separator, sentence in zip(separators, tokens, strict=False):
        if not sentence.strip():
            continue
        if byte_length(sentence) <= limit:
            pieces.append((separator, sentence))
            continue
        for index, word in enumerate(sentence.split()):
            gap = separator if index == 0 else " "
            while byte_length(word) > limit:
                cut = limit
                while byte_length(word[:cut]) > limit:
                    cut -= 1
                pieces.append((gap, word[:cut]))
                word, gap = word[cut:], ""
            pieces.append((gap, word))
    return pieces


def ago(delta: timedelta) -> str:
    """'8 days ago', '3 hours ago', 'a moment ago'."""
    seconds = int(delta.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''} ago"
    return "a moment ago"


def window_closed_reason(
    last_inbound_at: datetime | None, at: datetime, now: datetime, human: bool
) -> str:
    """Why Instagram will not take the message, and what the agent can do."""
    if last_inbound_at is None:
        return (
            "The customer has not written yet, and Instagram does not let a brand start a "
            "conversation. You can reply once they write."
        )
    wrote = ago(now - last_inbound_at)
    allowed = (
        "for 7 days with the human-agent tag" if human else "for automated messages for 24 hours"
    )
    when = "" if at <= now + timedelta(minutes=1) else " At the time you chose it will be closed."
    return (
        f"The customer last wrote {wrote}. Instagram allows replies {allowed} after their last "
        f"message, so you can reply again once they write.{when}"
    )
