"""Settings: canned_replies (being built)."""

from __future__ import annotations
