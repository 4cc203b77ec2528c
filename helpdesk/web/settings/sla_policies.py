"""Settings: sla_policies (being built)."""

from __future__ import annotations
