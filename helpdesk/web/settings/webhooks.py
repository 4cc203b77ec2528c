"""Settings: webhooks (being built)."""

from __future__ import annotations
