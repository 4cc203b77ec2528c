"""Channels (being built)."""

from __future__ import annotations

from helpdesk.web.api.blueprint import api_blueprint

bp = api_blueprint("channels", "Connected accounts")
