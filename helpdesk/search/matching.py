"""Case-insensitive text matching with LIKE, its wildcards escaped: the one place that writes a
LIKE pattern, so `%` and `_` typed by a person match themselves in every listing and search."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, func

ESCAPE = "\\"


def escape_like(text: str) -> str:
    """`text` lowercased, with LIKE's wildcards and the escape character itself escaped."""
    return (
        text.lower()
        .replace(ESCAPE, ESCAPE * 2)
        .replace("%", ESCAPE + "%")
        .replace("_", ESCAPE + "_")
    )


def contains(column: Any, text: str) -> ColumnElement[bool]:
    """`column` holds `text` anywhere, whatever the case."""
    return func.lower(column).like(f"%{escape_like(text)}%", escape=ESCAPE)


def starts_with(column: Any, text: str) -> ColumnElement[bool]:
    """`column` begins with `text`, whatever the case."""
    return func.lower(column).like(f"{escape_like(text)}%", escape=ESCAPE)
