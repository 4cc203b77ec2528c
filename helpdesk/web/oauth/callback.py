"""Being built."""

from __future__ import annotations
