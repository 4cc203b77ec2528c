"""Settings: connecting and disconnecting Instagram accounts (being built)."""

from __future__ import annotations
