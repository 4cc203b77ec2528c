"""Group commit for webhook deliveries: one INSERT, committed as it runs, for every request
waiting.

Each request hands its delivery to the process's writer thread and blocks until the row is
committed, so a 200 still means stored. While one batch is being written the next requests
queue up and go together in the next one: under load a commit (an fsync on the database
server) is shared by many deliveries instead of paid by each. While deliveries keep arriving
together the writer also waits up to a moment (INTAKE_GATHER_MS), as PostgreSQL's commit_delay
does, for as many as the last batch held, so that more share the commit; after a quiet moment
a delivery is written at once.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from datetime import datetime
from typing import NamedTuple

import psycopg
from flask import Flask
from sqlalchemy import Engine
from sqlalchemy.pool import PoolProxiedConnection as _Raw

from helpdesk.extensions import db
from helpdesk.intake.models import EventStatus, WebhookEvent

log = logging.getLogger(__name__)
MAX_BATCH = 200
IDLE_SECONDS = 10.0


# The whole batch as one statement whose only parameter is the batch as JSON text: one round
# trip, and the rows are taken apart by the server (json_to_recordset) rather than dumped as
# arrays value by value in Python. PostgreSQL only (the writer is used there alone).
INSERT_BATCH = f"""
INSERT INTO {WebhookEvent.__tablename__}
    (source, body, status, attempts, account_ids, request_id, received_at)
SELECT 'instagram', body, '{EventStatus.PENDING.value}', 0, account_ids, request_id, received_at
FROM json_to_recordset(%s::json)
    AS delivery(body text, account_ids json, request_id text, received_at timestamptz)
"""


class Delivery(NamedTuple):
    """What a webhook_events row holds on arrival; the rest are the columns' defaults."""

    body: str
    account_ids: list[str]
    request_id: str | None
    received_at: datetime


class DeliveryNotStored(Exception):
    """The database did not take the delivery (or did not answer in time): answer 5xx, so the
    sender retries; a retry that duplicates a late commit is absorbed by the message id."""


class _Pending:
    """One request's delivery, and a lock held until the writer is done with it: waiting on a
    bare lock costs the request one C call, where an Event builds a Condition in Python."""

    __slots__ = ("delivery", "done", "error")

    def __init__(self, delivery: Delivery) -> None:
        self.delivery = delivery
        self.error: BaseException | None = None
        self.done = threading.Lock()
        self.done.acquire()

    def wait(self, seconds: float) -> bool:
        return self.done.acquire(timeout=seconds)

    def finish(self) -> None:
        self.done.release()


def _batch_json(batch: list[_Pending]) -> tuple[str]:
    return (
        json.dumps(
            [
                {
                    "body": d.body,
                    "account_ids": d.account_ids,
                    "request_id": d.request_id,
                    "received_at": d.received_at.isoformat(),
                }
                for d in (pending.delivery for pending in batch)
            ]
        ),
    )


class DeliveryWriter:
    def __init__(self, app: Flask, wait_seconds: float = 10.0, gather_seconds: float = 0.0) -> None:
        self.app = app
        self.wait_seconds = wait_seconds
        self.gather_seconds = gather_seconds
        self._queue: queue.SimpleQueue[_Pending] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._owner_pid: int | None = None

    def store(self, delivery: Delivery) -> None:
        """Returns once the delivery's row is committed; raises DeliveryNotStored."""
        pending = _Pending(delivery)
        with self._lock:
            self._ensure_thread()
            self._queue.put(pending)
        if not pending.wait(self.wait_seconds):
            raise DeliveryNotStored("the database did not commit the delivery in time")
        if pending.error is not None:
            raise DeliveryNotStored(str(pending.error)) from pending.error

    def _ensure_thread(self) -> None:
        """Under the lock. A thread does not survive fork, so a server that loads the app before
        forking gets one writer per worker; an idle writer stops, and the next delivery starts
        another."""
        if self._owner_pid != os.getpid():
            self._queue = queue.SimpleQueue()
            threading.Thread(target=self._run, name="delivery-writer", daemon=True).start()
            self._owner_pid = os.getpid()

    def _run(self) -> None:
        incoming = self._queue
        with self.app.app_context():
            engine = db.engine
        connection: _Raw | None = None
        last = 0  # deliveries in the last batch, while they keep arriving together
        try:
            while (batch := self._next_batch(incoming, last)) is not None:
                connection = self._write(engine, connection, batch)
                last = len(batch)
        finally:
            if connection is not None:
                _release(connection)

    def _next_batch(
        self, incoming: queue.SimpleQueue[_Pending], last: int
    ) -> list[_Pending] | None:
        """Every delivery waiting, at least one; None once idle for IDLE_SECONDS.

        While deliveries keep arriving together (some were already waiting when the last batch
        was done) and fewer are waiting than the last batch held, the writer waits up to
        INTAKE_GATHER_MS for as many more, so that they share this commit; it writes as soon as
        they are there rather than always waiting the whole moment, which under a steady load
        only added to every request's time. After a quiet moment a delivery is written at once.
        """
        try:
            batch = [incoming.get_nowait()]
        except queue.Empty:
            first = self._wait_for_delivery(incoming)
            if first is None:
                return None
            batch, last = [first], 0
        _take_waiting(incoming, batch)
        if self.gather_seconds and len(batch) < last:
            deadline = time.monotonic() + self.gather_seconds
            while len(batch) < last and (left := deadline - time.monotonic()) > 0:
                try:
                    batch.append(incoming.get(timeout=left))
                except queue.Empty:
                    break
            _take_waiting(incoming, batch)
        return batch

    def _wait_for_delivery(self, incoming: queue.SimpleQueue[_Pending]) -> _Pending | None:
        """The next delivery, or None after IDLE_SECONDS without one: the thread then ends
        (under the lock, so that a delivery queued meanwhile starts another)."""
        while True:
            try:
                return incoming.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if incoming.empty():
                        self._owner_pid = None
                        return None

    def _write(self, engine: Engine, connection: _Raw | None, batch: list[_Pending]):
        """Insert and commit the batch on the writer's connection; returns the connection for the
        next batch (None after a failure, so the next one checks a healthy one out of the pool).
        A connection the server dropped while idle is replaced and the batch tried once more.

        The batch goes straight to the driver's cursor: it is one fixed statement, and
        SQLAlchemy's execution context would cost more than the statement itself."""
        rows = _batch_json(batch)
        try:
            for attempt in (1, 2):
                if connection is None:
                    connection = _checkout(engine)
                try:
                    with connection.driver_connection.cursor() as cursor:
                        cursor.execute(INSERT_BATCH, rows)
                    break
                except psycopg.Error:
                    broken = connection.driver_connection.broken
                    _release(connection)
                    connection = None
                    if attempt == 2 or not broken:
                        raise
        except Exception as exc:  # the whole batch failed: every request in it answers 5xx
            log.warning("could not store %d webhook deliveries: %s", len(batch), exc)
            for pending in batch:
                pending.error = exc
            if connection is not None:
                _release(connection)
            connection = None
        finally:
            for pending in batch:
                pending.finish()
        return connection


def _take_waiting(incoming: queue.SimpleQueue[_Pending], batch: list[_Pending]) -> None:
    """Add what is already queued to the batch, up to MAX_BATCH, without waiting."""
    while len(batch) < MAX_BATCH:
        try:
            batch.append(incoming.get_nowait())
        except queue.Empty:
            return


def _checkout(engine: Engine) -> _Raw:
    """A pooled connection in autocommit: the INSERT is its own transaction, committed in the
    same round trip (BEGIN, INSERT and COMMIT would be three)."""
    connection = engine.raw_connection()
    connection.driver_connection.autocommit = True
    return connection


def _release(connection: _Raw) -> None:
    """Back to the pool as the pool lent it (not in autocommit), or thrown away if broken."""
    driver = connection.driver_connection
    if driver.broken or driver.closed:
        connection.invalidate()
    else:
        try:
            driver.autocommit = False
        except psycopg.Error:
            connection.invalidate()
    connection.close()
