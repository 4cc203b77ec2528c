"""Instagram Login's return trip and Meta's callbacks: `/oauth/instagram/...` and the public
status page of a data-deletion request. Not under /settings: Meta and the admin's browser come
back here from instagram.com."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("oauth", __name__)

from helpdesk.web.oauth import callback, meta_callbacks  # noqa: E402,F401
