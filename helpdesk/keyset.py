"""Keyset pages of any listing: a page starts strictly after the last row the reader saw (its sort
key and id), so rows inserted meanwhile never shift or repeat a page, as they would with OFFSET.
The listings themselves come from the domain's queries; the API wraps the key in a cursor."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, SQLColumnExpression, and_, asc, desc, or_

from helpdesk.extensions import db


@dataclass(frozen=True)
class Order:
    """How a listing sorts: by `key` (if any) then by `id`, both in the same direction."""

    name: str
    # A mapped attribute (Ticket.id) or a column expression: both compare and sort alike.
    id: SQLColumnExpression[Any]
    key: SQLColumnExpression[Any] | None = None
    key_type: type = datetime
    descending: bool = True

    def columns(self) -> list[SQLColumnExpression[Any]]:
        return [self.key, self.id] if self.key is not None else [self.id]

    def after(self, values: list[Any]) -> ColumnElement:
        """Rows strictly after the cursor's row, written out so every backend binds the types."""
        before = (lambda c, v: c < v) if self.descending else (lambda c, v: c > v)
        if self.key is None:
            return before(self.id, values[0])
        key, row_id = values
        return or_(before(self.key, key), and_(self.key == key, before(self.id, row_id)))


def keyset_page(
    statement: Select, order: Order, after: list[Any] | None, limit: int
) -> tuple[list[Any], list[Any] | None]:
    """Up to `limit` of `statement`'s first entity after the row keyed `after`, and the last row's
    key when a next page exists (None at the end)."""
    if after is not None:
        statement = statement.where(order.after(after))
    direction = desc if order.descending else asc
    columns = order.columns()
    statement = (
        statement.add_columns(*columns)
        .order_by(*(direction(column) for column in columns))
        .limit(limit + 1)
    )
    rows = db.session.execute(statement).all()
    items = [row[0] for row in rows[:limit]]
    if len(rows) <= limit:
        return items, None
    return items, list(rows[limit - 1][1:])
