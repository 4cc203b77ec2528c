"""Every row of every table, to prove a refused action changed nothing."""

from __future__ import annotations

from sqlalchemy import select

from helpdesk.extensions import db

# Column values a refused form may still change: opening the conversation page again after a
# refusal marks the thread seen, which is reading, not the change that was refused.
PAGE_VIEW_COLUMNS = {
    ("conversations", "brand_seen_at"),
    ("conversations", "viewer_left_at"),
    ("conversation_views", "seen_at"),
    ("messages", "seen_at"),
}


def snapshot(volatile: set[tuple[str, str]] = PAGE_VIEW_COLUMNS) -> dict[str, list[tuple]]:
    """Every row of every table, minus page-view marks: equal before and after means unchanged."""
    db.session.rollback()  # a fresh read, and no transaction left open (SQLite would lock)
    rows = {}
    for table in db.metadata.sorted_tables:
        columns = [c for c in table.columns if (table.name, c.name) not in volatile]
        order = list(table.primary_key.columns) or columns
        result = db.session.execute(select(*columns).order_by(*order))
        rows[table.name] = [tuple(map(repr, row)) for row in result]
    db.session.rollback()
    return rows


def changed(before: dict, after: dict) -> dict[str, int]:
    """The tables whose rows differ, with how many rows were removed or added."""
    return {
        name: len(set(before[name]) ^ set(after[name]))
        for name in before
        if before[name] != after[name]
    }
