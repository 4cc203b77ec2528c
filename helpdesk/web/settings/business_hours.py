"""Settings: business_hours (being built)."""

from __future__ import annotations
