"""Sign in and sign out."""

from __future__ import annotations

from flask import current_app, flash, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf.csrf import CSRFError

from helpdesk import transaction
from helpdesk.accounts.service import on_sign_in, sign_out_everywhere
from helpdesk.logins.service import (
    InvalidCredentials,
    LoginThrottled,
    ThrottlePolicy,
    authenticate,
    reserve,
)
from helpdesk.web.auth import ConsoleUser, bp, safe_path


def _safe_next(target: str | None) -> str:
    return safe_path(target, url_for("console.inbox"))


def login_policy() -> ThrottlePolicy:
    """The configured limits on failed password checks: sign-ins, and password changes."""
    config = current_app.config
    return ThrottlePolicy(
        per_email=config.get("LOGIN_MAX_FAILURES_PER_EMAIL", 5),
        per_ip=config.get("LOGIN_MAX_FAILURES_PER_IP", 20),
        window=config.get("LOGIN_THROTTLE_WINDOW", ThrottlePolicy.window),
    )


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    if current_user.is_authenticated and request.method == "GET":
        return redirect(_safe_next(request.args.get("next")))
    email = request.form.get("email", "")
    if request.method == "POST":
        try:
            attempt = reserve(email, request.remote_addr or "?", policy=login_policy())
            transaction.commit()  # counted by every other request before the password is checked
            agent = authenticate(attempt, request.form.get("password", ""))
        except (InvalidCredentials, LoginThrottled) as refused:
            transaction.commit()  # the failed attempt counts, whatever comes next
            flash(refused.message, "error")
            return render_template("auth/login.html", email=email), refused.status
        on_sign_in(agent)  # an offline agent comes online; a chosen "away" is kept
        transaction.commit()
        target = _safe_next(request.args.get("next") or request.form.get("next"))
        # A new session at sign-in: nothing set before it (a planted cookie) survives.
        session.clear()
        login_user(ConsoleUser(agent), remember=request.form.get("remember") == "on")
        return redirect(target)
    return render_template("auth/login.html", email=email)


@bp.get("/logout")
@login_required
def logout_confirm() -> ResponseReturnValue:
    return render_template("auth/logout.html")


@bp.post("/logout")
@login_required
def logout() -> ResponseReturnValue:
    sign_out_everywhere(current_user.agent)
    transaction.commit()
    session.clear()
    logout_user()  # after the clear: it leaves the mark that deletes the remember-me cookie
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))


@bp.app_errorhandler(CSRFError)
def csrf_refused(error: CSRFError) -> ResponseReturnValue:
    return render_template("console/error.html", code=400, message=error.description), 400
