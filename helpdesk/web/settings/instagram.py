"""Settings: connecting an Instagram account with Instagram Login, and disconnecting one.

The connect button leaves for Instagram with a state bound to this browser session; the return
trip is `web/oauth/callback.py`. The binding is a random value kept in the signed session (only
its hash is stored with the state), so a callback opened in another browser is refused.
"""

from __future__ import annotations

import secrets

from flask import flash, g, redirect, render_template, session, url_for
from flask.typing import ResponseReturnValue

from helpdesk import transaction
from helpdesk.accounts.models import Role
from helpdesk.channels import instagram_login
from helpdesk.errors import InvalidState
from helpdesk.web.settings import bp, page
from helpdesk.web.settings.channels import channel_rows
from helpdesk.web.settings.forms import attempt

SESSION_KEY = "instagram_login_binding"


def session_binding() -> str:
    """This browser session's binding for Instagram Login (made on first use)."""
    binding = session.get(SESSION_KEY)
    if not binding:
        binding = session[SESSION_KEY] = secrets.token_urlsafe(32)
    return binding


@bp.get("/settings/channels/instagram/connect")
@page(Role.ADMIN)
def connect_instagram() -> ResponseReturnValue:
    try:
        url = instagram_login.start(g.brand, g.agent, session_binding())
    except InvalidState as refused:
        transaction.rollback()
        flash(refused.message, "error")
        return redirect(url_for("settings.channels"))
    transaction.commit()
    return redirect(url, code=302)


@bp.post("/settings/channels/<int:channel_id>/disconnect")
@page(Role.ADMIN)
def disconnect_channel(channel_id: int) -> ResponseReturnValue:
    channel = instagram_login.brand_channel(g.brand.id, channel_id)
    label = f"@{channel.username}" if channel.username else (channel.name or channel.account_id)

    def render(errors: dict[str, str]) -> str:
        return render_template(
            "settings/channels.html", rows=channel_rows(g.brand.id), errors=errors
        )

    return attempt(
        lambda: instagram_login.disconnect(channel, g.actor),
        f"Disconnected {label}. Its conversations stay in the inbox.",
        url_for("settings.channels"),
        render,
    )
