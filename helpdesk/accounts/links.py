"""The links invitations and resets send people to, and their e-mails.

A link is built from `PUBLIC_BASE_URL` when it is set (the address people reach the helpdesk
at, behind a proxy), else from the request that asked for it, else (the command line, which has
no request) from `SERVER_NAME` or the development server's address.
"""

from __future__ import annotations

from typing import Any

from flask import current_app, has_request_context, request, url_for

from helpdesk import mail

DEFAULT_BASE = "http://127.0.0.1:5000"


def public_url(endpoint: str, **values: Any) -> str:
    config = current_app.config
    if config.get("PUBLIC_BASE_URL"):
        base = config["PUBLIC_BASE_URL"]
    elif has_request_context():
        base = request.host_url
    elif config.get("SERVER_NAME"):
        base = f"{config.get('PREFERRED_URL_SCHEME', 'http')}://{config['SERVER_NAME']}"
    else:
        base = DEFAULT_BASE
    if has_request_context():
        path = url_for(endpoint, **values)
    else:
        path = current_app.url_map.bind("localhost").build(endpoint, values)
    return base.rstrip("/") + path


def invitation_url(token: str) -> str:
    return public_url("auth.invitation", invitation_token=token)


def reset_url(token: str) -> str:
    return public_url("auth.password_reset", reset_token=token)


def mail_invitation(email: str, brand_name: str, url: str) -> bool:
    """Sent after the commit, so that the link works when it arrives; with no SMTP_URL, False."""
    return mail.send_mail(
        email,
        f"You are invited to {brand_name}'s helpdesk",
        f"You have been invited to answer {brand_name}'s direct messages.\n\n"
        f"Choose your name and password here (the link works once, for 7 days):\n{url}\n",
    )


def mail_reset(email: str, url: str) -> bool:
    return mail.send_mail(
        email,
        "Set a new helpdesk password",
        "A new password was asked for your helpdesk account.\n\n"
        f"Set it here (the link works once, for one hour):\n{url}\n",
    )
