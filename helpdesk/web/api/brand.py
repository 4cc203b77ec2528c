"""The brand's settings (being built)."""

from __future__ import annotations

from helpdesk.web.api.blueprint import api_blueprint

bp = api_blueprint("brand", "The brand's settings")
