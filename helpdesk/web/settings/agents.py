"""Settings: agents (being built)."""

from __future__ import annotations
