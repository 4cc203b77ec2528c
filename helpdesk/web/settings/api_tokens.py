"""Settings: api_tokens (being built)."""

from __future__ import annotations
