"""Keyset pagination with opaque cursors: `{"items": [...], "next_cursor": "..." | null}`.

A cursor holds the listing's name and the last row's sort key and id (JSON, base64url), so a
page starts strictly after that row: rows inserted meanwhile never shift or repeat a page, as
they would with OFFSET. The pages themselves are `helpdesk.keyset`'s; this module speaks cursors.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from sqlalchemy import Select

from helpdesk.keyset import Order, keyset_page
from helpdesk.web.api.errors import InvalidField

DEFAULT_LIMIT = 25
MAX_LIMIT = 100
MAX_CURSOR_CHARS = 512


def encode_cursor(order: Order, values: list[Any]) -> str:
    plain = [v.isoformat() if isinstance(v, datetime) else v for v in values]
    raw = json.dumps([order.name, *plain], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(order: Order, cursor: str) -> list[Any]:
    """The cursor's values, checked against the listing: a forged or foreign one is a 422."""
    try:
        if len(cursor) > MAX_CURSOR_CHARS:
            raise ValueError
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        name, *values = json.loads(raw)
        if name != order.name or len(values) != len(order.columns()):
            raise ValueError
        if order.key is not None:
            values[0] = _typed(order.key_type, values[0])
        if not _small_int(values[-1]):
            raise ValueError
        return values
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError, OverflowError):
        raise InvalidField("cursor", "not a cursor of this listing") from None


def _small_int(value: Any) -> bool:
    """An int every backend binds (SQLite's INTEGER is 64-bit; ids and positions are 32-bit)."""
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) <= 2**31


def _typed(key_type: type, value: Any) -> Any:
    if key_type is datetime:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            raise ValueError
        return parsed
    if key_type is int and not _small_int(value):
        raise ValueError
    if key_type is str and not isinstance(value, str):
        raise ValueError
    return value


def paginate(statement: Select, order: Order, args: dict[str, Any]) -> tuple[list[Any], str | None]:
    """One page of `statement`'s first entity, and the cursor of the next page (None at the end)."""
    after = decode_cursor(order, args["cursor"]) if args.get("cursor") else None
    items, last = keyset_page(statement, order, after, args.get("limit", DEFAULT_LIMIT))
    return items, None if last is None else encode_cursor(order, last)
