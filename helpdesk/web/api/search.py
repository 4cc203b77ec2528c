"""Case-insensitive text matching for listings' `q` and filters, with LIKE's wildcards escaped."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func


def _escaped(text: str) -> str:
    return text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def contains(column: Any, text: str) -> Any:
    return func.lower(column).like(f"%{_escaped(text)}%", escape="\\")


def starts_with(column: Any, text: str) -> Any:
    return func.lower(column).like(f"{_escaped(text)}%", escape="\\")
