"""JSON endpoints of the console (pickers and polls) answer 401/4xx in JSON, not with pages."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

View = TypeVar("View", bound=Callable)


def json_endpoint(view: View) -> View:
    """Mark a view so that sign-in and error handling answer it in JSON."""
    view.json_endpoint = True  # type: ignore[attr-defined]
    return view
