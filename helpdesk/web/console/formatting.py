"""Template filters. Everything a customer wrote goes through Jinja's escaping; the one filter
that returns markup (`linkify`) escapes every piece itself and links only http(s) URLs."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from flask import Flask
from markupsafe import Markup, escape

from helpdesk.types import utcnow
from helpdesk.web.console.context import timezone

URL_RE = re.compile(r"\bhttps?://[^\s<>\"'`]+", re.IGNORECASE)
TRAILING = ".,;:!?)]}'\""


def http_url(value: object) -> str | None:
    """The URL when it is http(s) with a host, else None: nothing else reaches an href or src."""
    if not isinstance(value, str):
        return None
    url = value.strip()
    if any(ord(char) < 33 for char in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return url


def linkify(text: str | None) -> Markup:
    """Escape the text and turn its http(s) URLs into links that open safely in a new tab."""
    if not text:
        return Markup("")
    out: list[str] = []
    position = 0
    for match in URL_RE.finditer(text):
        url = match.group(0)
        trimmed = url.rstrip(TRAILING)
        end = match.start() + len(trimmed)
        out.append(str(escape(text[position : match.start()])))
        if http_url(trimmed):
            out.append(
                f'<a href="{escape(trimmed)}" target="_blank" '
                f'rel="noopener noreferrer nofollow">{escape(trimmed)}</a>'
            )
        else:
            out.append(str(escape(trimmed)))
        position = end
    out.append(str(escape(text[position:])))
    return Markup("".join(out))


def local(value: datetime | None, fmt: str = "%d %b %H:%M") -> str:
    """A UTC time in the brand's time zone."""
    if value is None:
        return ""
    return value.astimezone(timezone()).strftime(fmt)


def local_input(value: datetime | None) -> str:
    """The value of a `datetime-local` input, in the brand's time zone."""
    return local(value, "%Y-%m-%dT%H:%M") if value else ""


def iso(value: datetime | None) -> str:
    return value.isoformat() if value else ""


def duration(seconds: float) -> str:
    """Short human durations: 45s, 12m, 3h 05m, 2d 4h."""
    seconds = int(abs(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def since(value: datetime | None) -> str:
    """How long ago, e.g. '3h 05m'."""
    if value is None:
        return ""
    return duration((utcnow() - value).total_seconds())


def until(value: datetime | None) -> str:
    """Time left ('in 2h 10m') or overdue ('5m overdue')."""
    if value is None:
        return ""
    seconds = (value - utcnow()).total_seconds()
    return f"in {duration(seconds)}" if seconds >= 0 else f"{duration(seconds)} overdue"


def filesize(size: object) -> str:
    if not isinstance(size, int | float) or size < 0:
        return ""
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""


COLOUR_RE = re.compile(r"#[0-9a-fA-F]{6}")


def colour(value: object, default: str = "#6b7280") -> str:
    """A #rrggbb colour for a style attribute, or the default for anything else."""
    return value if isinstance(value, str) and COLOUR_RE.fullmatch(value) else default


def initials(name: str | None) -> str:
    """Two letters for an avatar: "Jane Doe" → JD, "@lena.k" → LK (a handle's @ is no letter)."""
    words = [w.lstrip("@#+") for w in re.split(r"[\s._-]+", name or "")]
    words = [w for w in words if w and w[0].isalnum()]
    return "".join(w[0] for w in words[:2]).upper() or "?"


def register_filters(app: Flask) -> None:
    filters: dict[str, Callable[..., Any]] = {
        "http_url": http_url,
        "linkify": linkify,
        "local": local,
        "local_input": local_input,
        "iso": iso,
        "since": since,
        "until": until,
        "duration": duration,
        "filesize": filesize,
        "initials": initials,
        "colour": colour,
    }
    for name, function in filters.items():
        app.add_template_filter(function, name)
