"""Handing work to the workers after a commit, without letting a dead broker stall requests.

Everything sent this way is also found by a periodic sweep (pending webhook deliveries, queued
messages, due work), so a send that is skipped or fails delays work but never loses it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from flask import current_app
from redis import Redis, RedisError

log = logging.getLogger(__name__)
PAUSE_AFTER_FAILURE_SECONDS = 10.0
COALESCE_SECONDS = 0.2
KICK_SECONDS = 5

_lock = threading.Lock()
_closed_until = 0.0
_last_sent: dict[str, float] = {}


def send_task(name: str, args: list | tuple = (), kwargs: dict | None = None) -> bool:
    """Send by task name; after a broker failure, skip sends for a few seconds (a client that
    cannot connect retries for seconds, and a webhook or reply must not wait for it)."""
    global _closed_until
    if time.monotonic() < _closed_until:
        return False
    try:
        current_app.extensions["celery"].send_task(
            name, args=list(args), kwargs=kwargs or {}, retry=False
        )
        return True
    except Exception as exc:  # any broker or connection error: the work is already stored
        with _lock:
            _closed_until = time.monotonic() + PAUSE_AFTER_FAILURE_SECONDS
        log.warning("broker unreachable, %s not sent: %s", name, type(exc).__name__)
        return False


def send_task_coalesced(name: str) -> bool:
    """For tasks that drain a backlog: at most one send per COALESCE_SECONDS from this process."""
    now = time.monotonic()
    if now - _last_sent.get(name, 0.0) < COALESCE_SECONDS:
        return False
    _last_sent[name] = now
    return send_task(name)


def kick(name: str) -> bool:
    """Ask for a task that drains a backlog, unless one is already waiting for a worker.

    With Redis, every web process shares one flag: at most one such task waits in the queue
    however fast requests arrive, and the task clears the flag when it starts (`kicked`), so
    work stored after that start asks again. Each process also asks at most once every
    COALESCE_SECONDS, as it does alone without Redis.
    """
    client = redis_client()
    if client is None:
        return send_task_coalesced(name)
    now = time.monotonic()
    if now - _last_sent.get(name, 0.0) < COALESCE_SECONDS:
        return False  # this process asked a moment ago: not even a round trip to Redis
    _last_sent[name] = now
    try:
        if not client.set(_key(client, f"kick:{name}"), "1", nx=True, ex=KICK_SECONDS):
            return False
    except RedisError:
        return False  # the broker is the same server: the periodic sweep will find the work
    return send_task(name)


def kicked(name: str) -> None:
    """Called by the task when it starts: later work must send another."""
    client = redis_client()
    if client is not None:
        try:
            client.delete(_key(client, f"kick:{name}"))
        except RedisError:
            pass


@contextmanager
def runner_slot(name: str, seconds: float, slots: int = 1) -> Iterator[bool]:
    """Yield whether this process may run `name` now: with Redis, at most `slots` runners at a
    time across every worker (a hold lapses after `seconds` if its holder dies); without
    Redis, always."""
    client = redis_client()
    if client is None:
        yield True
        return
    held = None
    try:
        for slot in range(max(1, slots)):
            lock = client.lock(_key(client, f"run:{name}:{slot}"), timeout=seconds, blocking=False)
            if lock.acquire():
                held = lock
                break
    except RedisError:
        yield True  # cannot tell: running more is safe (rows are claimed), only slower
        return
    try:
        yield held is not None
    finally:
        if held is not None:
            try:
                held.release()
            except RedisError:
                pass  # lapsed or Redis gone: the hold expires on its own


def redis_client() -> Redis | None:
    """One client (a connection pool) per process and URL; short timeouts, since a request that
    already committed must never wait long for Redis."""
    url = current_app.config.get("REDIS_URL")
    if not url:
        return None
    cached = current_app.extensions.get("redis")
    if cached is None or cached[0] != url:
        client = Redis.from_url(
            url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=30
        )
        cached = current_app.extensions["redis"] = (url, client)
    return cached[1]


def _key(client: Redis, name: str) -> str:
    """Keys carry the database number, like the live channels, for installs sharing a server."""
    return f"helpdesk:{client.connection_pool.connection_kwargs.get('db', 0)}:{name}"


def reset() -> None:
    """Forget past failures and sends (tests, or an operator who knows the broker is back)."""
    global _closed_until
    _closed_until = 0.0
    _last_sent.clear()
