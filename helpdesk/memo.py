"""Reading a brand's configuration, and looking up a row by its natural key, once per batch
instead of once per message.

While the intake applies a batch of deliveries, the same brand's keyword rules, SLA policies,
business hours, routing rules and webhook subscriptions would be read again for every ticket.
Inside `batch_scope()` such reads go through `cached(key, load)` and are made once; outside a
scope (a request, a sweep) `cached` just loads. Nothing the intake does changes configuration,
so a batch never reads a stale copy of its own.

`found(key, load)` is for the rows a batch looks up again and again by a natural key (a contact
by its platform id, a thread by its key): the session's identity map keeps one object per row,
but only a lookup by primary key is answered from it. A row found once is that same object for
the rest of the batch; a row not found is looked up again, since the batch may create it.
`remember(key, row)` keeps a row the batch read by other means (many at once) for `found`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

T = TypeVar("T")
_scope: ContextVar[dict[Hashable, object] | None] = ContextVar("memo_scope", default=None)


@contextmanager
def batch_scope() -> Iterator[None]:
    token = _scope.set({})
    try:
        yield
    finally:
        _scope.reset(token)


def cached(key: Hashable, load: Callable[[], T]) -> T:
    scope = _scope.get()
    if scope is None:
        return load()
    if key not in scope:
        scope[key] = load()
    return scope[key]  # type: ignore[return-value]


def found(key: Hashable, load: Callable[[], T | None]) -> T | None:
    scope = _scope.get()
    if scope is None:
        return load()
    row = scope.get(key)
    if row is None:
        row = load()
        if row is not None:
            scope[key] = row
    return row  # type: ignore[return-value]


def remember(key: Hashable, row: object) -> None:
    scope = _scope.get()
    if scope is not None:
        scope[key] = row
