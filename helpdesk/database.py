"""SQLite settings for the embedded default: WAL, a busy timeout, enforced foreign keys; the
health checks' probe; the count of rows an UPDATE or DELETE matched; and savepoints, which an
intake batch goes without."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
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


# Savepoints ---------------------------------------------------------------------------------------

_without_savepoints: ContextVar[bool] = ContextVar("without_savepoints", default=False)


class SavepointSkipped(Exception):
    """A block that would have been a savepoint failed inside `without_savepoints()`: what it
    wrote cannot be undone alone, so the whole transaction must be."""


@contextmanager
def savepoint() -> Iterator[None]:
    """A savepoint: if the block fails, only what it wrote is undone (the caller may then catch
    the error, say an IntegrityError of a race, and carry on).

    Inside `without_savepoints()` no savepoint is taken, and any failure of the block comes out
    as SavepointSkipped, which no such caller catches."""
    if not _without_savepoints.get():
        with db.session.begin_nested():
            yield
        return
    try:
        yield
        db.session.flush()  # as releasing the savepoint would: its errors surface here
    except SavepointSkipped:
        raise
    except Exception as exc:
        raise SavepointSkipped(f"{type(exc).__name__}: {exc}") from exc


@contextmanager
def without_savepoints() -> Iterator[None]:
    """For an intake batch: one transaction over hundreds of events, where a savepoint per event
    would pass PostgreSQL's 64 cached subtransactions and slow every session down. A failure then
    undoes the whole batch, and the batch's caller takes the failing event alone."""
    token = _without_savepoints.set(True)
    try:
        yield
    finally:
        _without_savepoints.reset(token)
