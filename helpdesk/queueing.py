"""Handing work to the workers after a commit, without letting a dead broker stall requests.

Everything sent this way is also found by a periodic sweep (pending webhook deliveries, queued
messages, due work), so a send that is skipped or fails delays work but never loses it.
"""

from __future__ import annotations

import logging
import threading
import time

from flask import current_app

log = logging.getLogger(__name__)
PAUSE_AFTER_FAILURE_SECONDS = 10.0
COALESCE_SECONDS = 0.2

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


def reset() -> None:
    """Forget past failures and sends (tests, or an operator who knows the broker is back)."""
    global _closed_until
    _closed_until = 0.0
    _last_sent.clear()
