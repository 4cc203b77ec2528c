"""Handing work to the workers after a commit, without letting a dead broker stall requests.

The one module of helpdesk/ that knows the workers' task names: services and views call the
plain functions below (`enqueue_delivery`, `enqueue_reaction`, `wake_intake`), and the names are
sent through the app's Celery instance, so helpdesk/ never imports `workers` (which imports
helpdesk) and a renamed task is changed here alone.

Everything sent this way is also found by a periodic sweep (pending webhook deliveries, queued
messages, due work), so a send that is skipped or fails delays work but never loses it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from flask import current_app
from redis import Redis, RedisError

from helpdesk.breaker import CircuitBreaker

log = logging.getLogger(__name__)
PAUSE_AFTER_FAILURE_SECONDS = 10.0
COALESCE_SECONDS = 0.2
KICK_SECONDS = 5

DELIVER_MESSAGE = "workers.tasks.delivery.deliver_message"
DELIVER_REACTION = "workers.tasks.delivery.deliver_reaction"
PROCESS_PENDING_WEBHOOKS = "workers.tasks.intake.process_pending_webhooks"
DELIVER_OUTGOING_WEBHOOKS = "workers.tasks.outgoing.deliver_outgoing_webhooks"
REFRESH_INSTAGRAM_TOKENS = "workers.tasks.channels.refresh_instagram_tokens"
RUN_BACKFILL = "workers.tasks.backfill.run_backfill"
RESUME_BACKFILLS = "workers.tasks.backfill.resume_backfills"
PURGE_EXPIRED = "workers.tasks.retention.purge_expired_content"
COPY_MEDIA = "workers.tasks.media.copy_media"
SWEEP_MEDIA = "workers.tasks.media.sweep_media_copies"
TASK_NAMES = (
    DELIVER_MESSAGE,
    DELIVER_REACTION,
    PROCESS_PENDING_WEBHOOKS,
    DELIVER_OUTGOING_WEBHOOKS,
    REFRESH_INSTAGRAM_TOKENS,
    RUN_BACKFILL,
    RESUME_BACKFILLS,
    PURGE_EXPIRED,
    COPY_MEDIA,
    SWEEP_MEDIA,
)

breaker = CircuitBreaker(PAUSE_AFTER_FAILURE_SECONDS)
_last_sent: dict[str, float] = {}


# What services and views call -------------------------------------------------------------------


def enqueue_delivery(message_id: int) -> bool:
    """Hand a queued message to a delivery worker; call only after the commit, so the worker
    finds the row. A broker that is down is logged, not raised: delivery's sweep sends it."""
    return send_task(DELIVER_MESSAGE, [message_id])


def enqueue_reaction(message_id: int, emoji: str | None) -> bool:
    """Like enqueue_delivery, for the brand's reaction (an emoji; None takes it back)."""
    return send_task(DELIVER_REACTION, [message_id, emoji])


def wake_intake() -> bool:
    """Wake the intake worker unless a wake-up is already waiting: one task processes every
    pending webhook delivery, so a burst costs a handful of broker messages, not one each."""
    return kick(PROCESS_PENDING_WEBHOOKS)


def enqueue_media_copy(media_id: int) -> bool:
    """Copy an inbound medium now, after the commit that stored its row; the media sweep finds
    it anyway when the broker is down."""
    return send_task(COPY_MEDIA, [media_id])


def wake_outgoing() -> bool:
    """Ask for a run of the outgoing-webhook sender now rather than at beat's next tick (a test
    sent from the settings page); like wake_intake, one waiting run serves every send."""
    return kick(DELIVER_OUTGOING_WEBHOOKS)


# Sending ----------------------------------------------------------------------------------------


def send_task(name: str, args: list | tuple = (), kwargs: dict | None = None) -> bool:
    """Send by task name; after a broker failure, skip sends for a few seconds (a client that
    cannot connect retries for seconds, and a webhook or reply must not wait for it)."""
    if not breaker.allows():
        return False
    try:
        current_app.extensions["celery"].send_task(
            name, args=list(args), kwargs=kwargs or {}, retry=False
        )
    except Exception as exc:  # any broker or connection error: the work is already stored
        breaker.failed()
        log.warning("broker unreachable, %s not sent: %s", name, type(exc).__name__)
        return False
    breaker.succeeded()
    return True


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
    breaker.reset()
    _last_sent.clear()
