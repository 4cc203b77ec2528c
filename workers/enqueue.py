"""Enqueue after commit without letting a dead broker stall web requests.

Everything enqueued this way is also found by a periodic sweep (pending webhook deliveries,
queued messages, due work), so a skipped enqueue delays work but never loses it.
"""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger(__name__)
PAUSE_AFTER_FAILURE_SECONDS = 10.0

_lock = threading.Lock()
_closed_until = 0.0


def enqueue(task, *args, **kwargs) -> bool:
    """Send the task; after a broker failure, skip sends for a few seconds (the sweeps catch up)."""
    global _closed_until
    if time.monotonic() < _closed_until:
        return False
    try:
        task.apply_async(args=args, kwargs=kwargs, retry=False)
        return True
    except Exception as exc:  # any broker or connection error: the work is already stored
        with _lock:
            _closed_until = time.monotonic() + PAUSE_AFTER_FAILURE_SECONDS
        log.warning("broker unreachable, %s not enqueued: %s", task.name, type(exc).__name__)
        return False


def reset() -> None:
    """Forget a past failure (tests, or an operator who knows the broker is back)."""
    global _closed_until
    _closed_until = 0.0
    _last_sent.clear()


_last_sent: dict[str, float] = {}
COALESCE_SECONDS = 0.2


def enqueue_coalesced(task, *args, **kwargs) -> bool:
    """For tasks that drain a backlog: send at most one per COALESCE_SECONDS from this process."""
    now = time.monotonic()
    if now - _last_sent.get(task.name, 0.0) < COALESCE_SECONDS:
        return False
    _last_sent[task.name] = now
    return enqueue(task, *args, **kwargs)
