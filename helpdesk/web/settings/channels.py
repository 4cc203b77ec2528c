"""Settings: channels (being built)."""

from __future__ import annotations
