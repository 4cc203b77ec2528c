"""Settings: privacy (being built)."""

from __future__ import annotations
