"""SQLite settings for the embedded default: WAL, a busy timeout, enforced foreign keys; the
health checks' probe; and the count of rows an UPDATE or DELETE matched."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import event, text
from sqlalchemy.engine import CursorResult, Engine
from sqlalchemy.sql import Executable

from helpdesk.extensions import db

SQLITE_BUSY_TIMEOUT_MS = 30_000


def configure_sqlite(engine: Engine) -> None:
    """Make a SQLite engine safe for a web process and workers writing the same file."""
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record) -> None:
        # SQLAlchemy issues BEGIN itself, so SAVEPOINTs work (pysqlite's own handling breaks them).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection) -> None:
        # IMMEDIATE takes the write lock up front: a deferred transaction that reads and then
        # writes fails at once with "database is locked" when another process wrote meanwhile.
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def check_database() -> None:
    """One round trip to the database; raises when it cannot be reached."""
    db.session.execute(text("SELECT 1"))


def rows_matched(statement: Executable) -> int:
    """Run an UPDATE or DELETE and answer how many rows it matched: a conditional update claims a
    row (a seat, a ticket, a delivery) when the count is one. The session's types answer a plain
    Result; for these statements it is the CursorResult that carries the count."""
    return cast("CursorResult[Any]", db.session.execute(statement)).rowcount
