"""Settings: the signed-in agent's own account, open to every role.

Changing the password ends every session of the agent (the fingerprint of each session holds
the password hash and the session epoch); the browser that changed it is signed in again at
once, keeping its remember-me choice, so only the other devices are signed out.
"""

from __future__ import annotations

from typing import Any

from flask import current_app, g, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import login_user

from helpdesk import transaction
from helpdesk.accounts import profile
from helpdesk.accounts.models import Agent, Role
from helpdesk.accounts.passwords import MIN_LENGTH
from helpdesk.logins import service as logins
from helpdesk.notifications.models import NotificationKind
from helpdesk.web.auth import ConsoleUser
from helpdesk.web.auth.routes import login_policy
from helpdesk.web.settings import bp, page
from helpdesk.web.settings.forms import attempt, submitted

# What each kind of notification is, in the words of the page.
KIND_LABELS = {
    NotificationKind.ASSIGNMENT: "A ticket is assigned to me",
    NotificationKind.MENTION: "Someone mentions me in a note",
    NotificationKind.SLA_WARNING: "A ticket of mine is close to its SLA target",
    NotificationKind.SLA_BREACH: "A ticket of mine missed its SLA target",
    NotificationKind.RECONNECT: "A channel needs an admin to reconnect it (admins only)",
    NotificationKind.AUTOMATION: "An automation rule sends me a notification",
}
AVAILABILITY_LABELS = (("online", "Online: take new tickets at once"), ("away", "Away"))


def _render(errors: dict[str, str], form: dict[str, Any] | None = None) -> str:
    agent = g.agent
    if form is None:
        chosen = profile.notification_defaults(agent)
        form = {
            "name": agent.name,
            "notifications": [kind for kind, on in chosen.items() if on],
            "sign_in_availability": agent.sign_in_availability,
        }
    notifications = form.get("notifications") or []
    if isinstance(notifications, str):
        notifications = [notifications]
    return render_template(
        "settings/account.html",
        errors=errors,
        form={**form, "notifications": notifications},
        kinds=[(kind.value, KIND_LABELS[kind]) for kind in NotificationKind],
        availabilities=AVAILABILITY_LABELS,
        min_length=MIN_LENGTH,
    )


@bp.get("/account")
@page(Role.AGENT)
def account() -> ResponseReturnValue:
    return _render({})


@bp.post("/account")
@page(Role.AGENT)
def update_account() -> ResponseReturnValue:
    form = {**submitted(), "notifications": request.form.getlist("notifications")}
    return attempt(
        lambda: profile.update_profile(
            g.agent,
            request.form.get("name", ""),
            request.form.getlist("notifications"),
            request.form.get("sign_in_availability", ""),
        ),
        "Your account is saved.",
        url_for("settings.account"),
        lambda errors: _render(errors, form),
    )


def _sign_in_again(agent: Agent) -> None:
    """The session that changed the password stays signed in under the new fingerprint."""
    cookie = current_app.config.get("REMEMBER_COOKIE_NAME", "remember_token")
    login_user(ConsoleUser(agent), remember=cookie in request.cookies)


@bp.post("/account/password")
@page(Role.AGENT)
def change_password() -> ResponseReturnValue:
    """The current password is checked as a sign-in's is, and counts against the same limits: a
    stolen session cannot be used to guess it."""
    current = request.form.get("current_password", "")
    try:
        ip = request.remote_addr or "?"
        reservation = logins.reserve(g.agent.email, ip, policy=login_policy())
        transaction.commit()  # counted by every other request before the password is checked
        logins.authenticate(reservation, current)
    except (logins.InvalidCredentials, logins.LoginThrottled) as refused:
        transaction.commit()  # the failed check counts, whatever comes next
        if isinstance(refused, logins.LoginThrottled):
            wait = f"Too many wrong passwords. Try again in {refused.wait_words}."
            return _render({"current_password": wait}), refused.status
        return _render({"current_password": "This is not your current password."}), 422
    transaction.commit()
    return attempt(
        lambda: profile.change_password(
            g.agent,
            request.form.get("current_password", ""),
            request.form.get("password", ""),
            request.form.get("password_confirmation", ""),
        ),
        "Your password is changed. Your other devices are signed out.",
        url_for("settings.account"),
        lambda errors: _render(errors),  # passwords are never sent back into the page
        after=_sign_in_again,
    )
