"""A circuit breaker for the calls a request makes after its commit (the broker, Redis pub/sub).

Such a call is a nicety: the committed rows are what counts, and a periodic sweep or the next
poll catches up. A client that cannot connect retries for seconds, so after one failure the
callers skip the call for a cooldown instead of making every request wait for the same timeout.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class CircuitBreaker:
    """Open (calls skipped) for `cooldown_seconds` after a failure, closed again after that or
    after a success; one per process and kind of call, shared by its threads."""

    def __init__(
        self, cooldown_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.cooldown_seconds = cooldown_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._open_until = 0.0

    def allows(self) -> bool:
        """Whether a call may be tried now."""
        return self._clock() >= self._open_until

    def failed(self) -> None:
        """A call failed: skip calls for the cooldown."""
        with self._lock:
            self._open_until = self._clock() + self.cooldown_seconds

    def succeeded(self) -> None:
        """A call went through: the service is back."""
        self.reset()

    def reset(self) -> None:
        """Close at once (tests, or an operator who knows the service is back)."""
        with self._lock:
            self._open_until = 0.0
