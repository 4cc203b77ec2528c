"""The one circuit breaker: after a failure the broker and Redis pub/sub are left alone for a
cooldown, so a request that already committed never waits on a service that is down."""

from __future__ import annotations

from helpdesk import queueing
from helpdesk.breaker import CircuitBreaker
from helpdesk.live import events


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_new_breaker_allows_calls():
    assert CircuitBreaker(10, Clock()).allows()


def test_a_failure_opens_it():
    breaker = CircuitBreaker(10, Clock())
    breaker.failed()
    assert not breaker.allows()


def test_it_stays_open_for_its_cooldown_then_lets_a_call_try():
    clock = Clock()
    breaker = CircuitBreaker(10, clock)
    breaker.failed()
    clock.now += 9.9
    assert not breaker.allows()
    clock.now += 0.1
    assert breaker.allows()


def test_another_failure_starts_the_cooldown_again():
    clock = Clock()
    breaker = CircuitBreaker(10, clock)
    breaker.failed()
    clock.now += 10
    breaker.failed()
    clock.now += 5
    assert not breaker.allows()


def test_a_success_closes_it():
    breaker = CircuitBreaker(10, Clock())
    breaker.failed()
    breaker.succeeded()
    assert breaker.allows()


def test_reset_closes_it():
    breaker = CircuitBreaker(10, Clock())
    breaker.failed()
    breaker.reset()
    assert breaker.allows()


def test_the_broker_and_live_updates_each_have_their_own():
    assert isinstance(queueing.breaker, CircuitBreaker)
    assert isinstance(events.breaker, CircuitBreaker)
    assert queueing.breaker is not events.breaker
    try:
        queueing.breaker.failed()
        assert events.breaker.allows()
    finally:
        queueing.reset()
