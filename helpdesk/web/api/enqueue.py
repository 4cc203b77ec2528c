"""Hand committed work to the delivery workers; a failure here never undoes what was stored.

The delivery package is imported when needed and is optional: without it a queued message stays
queued in the database, where delivery's sweep finds it, so nothing is lost.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

log = logging.getLogger(__name__)

DELIVERY_MODULE = "helpdesk.delivery.service"


def _call(function: str, *args: Any) -> bool:
    try:
        service = importlib.import_module(DELIVERY_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name and DELIVERY_MODULE.startswith(exc.name):
            return False
        raise
    try:
        return bool(getattr(service, function)(*args))
    except Exception:  # a broker that is down: the stored row is what counts
        log.warning("could not enqueue %s%r", function, args, exc_info=True)
        return False


def enqueue_delivery(message_id: int) -> bool:
    """Send a queued message; call only after the commit, so the worker finds the row."""
    return _call("enqueue_delivery", message_id)


def enqueue_reaction(message_id: int, emoji: str | None) -> bool:
    """Send the brand's reaction (None: take it back) to the platform."""
    return _call("enqueue_reaction", message_id, emoji)
