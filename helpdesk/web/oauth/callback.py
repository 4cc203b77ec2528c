"""Instagram Login's return trip: `GET /oauth/instagram/callback?code=...&state=...`.

Only the signed-in admin whose session started the connection can finish it; anything else is a
page saying why, in words, with the way back to Settings › Channels, and no channel changed.
"""

from __future__ import annotations

from flask import flash, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from helpdesk import transaction
from helpdesk.channels import instagram_login
from helpdesk.web.console.context import BRAND_KEY
from helpdesk.web.oauth import bp
from helpdesk.web.settings.instagram import SESSION_KEY

# Instagram's error codes in the admin's words; anything else shows Instagram's description.
ERRORS = {
    "access_denied": "Instagram did not connect the account: permission was not given.",
}


def _refused(message: str, status: int = 400) -> ResponseReturnValue:
    return render_template("oauth/refused.html", message=message), status


@bp.get("/oauth/instagram/callback")
def instagram_callback() -> ResponseReturnValue:
    if not current_user.is_authenticated:
        return _refused(
            "You are not signed in to the helpdesk any more, so the Instagram account was not "
            "connected. Sign in, then connect it again from Settings › Channels.",
            401,
        )
    error = request.args.get("error")
    if error:
        description = request.args.get("error_description") or request.args.get("error_reason")
        message = ERRORS.get(error) or "Instagram did not connect the account."
        if description:
            message += f" Instagram said: “{description}”"
        return _refused(message)
    binding = session.get(SESSION_KEY) or ""
    try:
        channel = instagram_login.finish(
            request.args.get("state", ""),
            request.args.get("code", ""),
            binding,
            current_user.agent,
        )
    except instagram_login.LoginRefused as refused:
        transaction.rollback()
        return _refused(refused.message)
    transaction.commit()
    session[BRAND_KEY] = channel.brand_id
    flash(f"Connected @{channel.username}" if channel.username else "Connected", "success")
    # Its own fragment: a browser would otherwise keep Instagram's "#_" on the page address.
    return redirect(url_for("settings.channels", _anchor="channels"), code=302)
