"""Being built."""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """Add this module's routes to a simulator app."""
