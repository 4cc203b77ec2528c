"""Database plumbing the metrics share: advisory locks, UTC sessions, bulk inserts (COPY on
PostgreSQL) and id lists, kept apart so each metrics module reads as its rule alone."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import Integer, any_, insert, literal, text
from sqlalchemy.dialects.postgresql import ARRAY

from helpdesk.extensions import Model, db, table_of


def is_postgres() -> bool:
    return db.session.get_bind().dialect.name == "postgresql"


def lock_key(name: str) -> int:
    return int.from_bytes(
        hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True
    )


def lock(names: Iterable[str]) -> None:
    """Transaction-scoped advisory locks, taken in one sorted order so that two workers never
    wait on each other in a cycle."""
    if not is_postgres():
        return
    keys = sorted({lock_key(name) for name in names})
    if keys:
        db.session.execute(
            text("SELECT count(pg_advisory_xact_lock(k)) FROM unnest(CAST(:keys AS bigint[])) k"),
            {"keys": keys},
        )


def utc_session() -> None:
    """On PostgreSQL, have this transaction hand back times in UTC: the driver then attaches a
    fixed offset instead of a ZoneInfo, which makes hundreds of thousands of conversions cheap."""
    if is_postgres():
        db.session.execute(text("SET LOCAL TimeZone = 'UTC'"))


def bulk_insert(model: type[Model], columns: Sequence[str], rows: list[tuple]) -> None:
    """Many rows into a model's table in the session's transaction: COPY on PostgreSQL."""
    if not rows:
        return
    table = table_of(model)
    db.session.flush()
    connection = db.session.connection()
    if connection.dialect.name != "postgresql":
        connection.execute(insert(table), [dict(zip(columns, row, strict=True)) for row in rows])
        return
    statement = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
    raw = connection.connection.driver_connection
    with raw.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row([json.dumps(v) if isinstance(v, (list, dict)) else v for v in row])


def one_of(column, ids: Sequence[int]) -> Any:
    """``column IN ids``; on PostgreSQL one array parameter, which keeps a thousand ids cheap to
    send and plan."""
    if is_postgres():
        return column == any_(literal(list(ids), ARRAY(Integer)))
    return column.in_(list(ids))


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
