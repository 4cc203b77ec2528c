"""The pages behind an invitation link and a password-reset link: a form each, public (the token
is the credential), refusing a weak password next to its field without changing anything."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_login import login_user

from helpdesk import transaction
from helpdesk.accounts import invitations
from helpdesk.accounts.passwords import MIN_LENGTH
from helpdesk.accounts.service import get_agent, on_sign_in
from helpdesk.brands.service import get_brand
from helpdesk.errors import DomainError, InvalidField, LinkGone, NotFound
from helpdesk.web.auth import ConsoleUser, bp


def _gone(error: NotFound | LinkGone) -> ResponseReturnValue:
    transaction.rollback()
    return render_template("auth/link_gone.html", code=error.status, message=error.message), (
        error.status
    )


def _field_errors(error: DomainError) -> dict[str, str]:
    if isinstance(error, InvalidField):
        return {field: messages[0] for field, messages in error.fields.items()}
    return {"password": error.message}


@bp.route("/invitations/<invitation_token>", methods=["GET", "POST"])
def invitation(invitation_token: str) -> ResponseReturnValue:
    """Accepting activates the account and signs the new agent in, straight to the inbox."""
    try:
        invite = invitations.open_invitation(invitation_token)
    except (NotFound, LinkGone) as error:
        return _gone(error)
    email, brand_name = invite.email, get_brand(invite.brand_id).name
    name = request.form.get("name", "")
    errors: dict[str, str] = {}
    if request.method == "POST":
        try:
            agent = invitations.accept(invitation_token, name, request.form.get("password", ""))
        except (NotFound, LinkGone) as error:
            return _gone(error)
        except DomainError as error:
            transaction.rollback()
            errors = _field_errors(error)
        else:
            on_sign_in(agent)
            transaction.commit()
            session.clear()  # a new session: nothing from before the sign-in survives
            login_user(ConsoleUser(agent))
            flash(f"Welcome to {brand_name}, {agent.first_name}.", "success")
            return redirect(url_for("console.inbox"))
    page = render_template(
        "auth/invitation.html",
        brand_name=brand_name,
        email=email,
        name=name,
        errors=errors,
        min_length=MIN_LENGTH,
    )
    return page, 422 if errors else 200


@bp.route("/password-reset/<reset_token>", methods=["GET", "POST"])
def password_reset(reset_token: str) -> ResponseReturnValue:
    """A new password ends every session of the agent; they sign in again with it."""
    try:
        row = invitations.open_reset(reset_token)
    except (NotFound, LinkGone) as error:
        return _gone(error)
    agent = get_agent(row.agent_id)
    email = agent.email if agent is not None else ""
    errors: dict[str, str] = {}
    if request.method == "POST":
        try:
            invitations.reset(reset_token, request.form.get("password", ""))
        except (NotFound, LinkGone) as error:
            return _gone(error)
        except DomainError as error:
            transaction.rollback()
            errors = _field_errors(error)
        else:
            transaction.commit()
            session.clear()
            flash("Your password is set. Sign in with it.", "success")
            return redirect(url_for("auth.login"))
    page = render_template(
        "auth/password_reset.html", email=email, errors=errors, min_length=MIN_LENGTH
    )
    return page, 422 if errors else 200
