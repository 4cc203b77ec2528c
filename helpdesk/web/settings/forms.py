"""Settings forms: a refused input re-renders the page with the message next to its field.

`attempt` runs one service call. Success commits, flashes and redirects (Post/Redirect/Get).
A DomainError rolls back, so nothing of the attempt is saved, and the page is rendered again with
status 422, the values the user typed (`form`) and `errors`: `{field: message}` from an
`InvalidField`, else `{"_form": message}`. A missing role is not a form error: it answers 403.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import flash, redirect, request
from flask.typing import ResponseReturnValue

from helpdesk import transaction
from helpdesk.errors import DomainError, Forbidden, NotFound

FORM = "_form"


def errors_of(refused: DomainError) -> dict[str, str]:
    """`{field: message}` for the fields the refusal names, else one message for the form."""
    fields = getattr(refused, "fields", None) or {}
    named = {name: "; ".join(map(str, messages)) for name, messages in fields.items()}
    return named or {FORM: refused.message}


def attempt(
    action: Callable[[], Any],
    success: str | Callable[[Any], str] | None,
    redirect_to: str | Callable[[Any], str],
    render: Callable[[dict[str, str]], str],
    after: Callable[[Any], object] | None = None,
) -> ResponseReturnValue:
    """Run `action`; on success commit, flash `success` and redirect; on a refusal roll back and
    answer `render(errors)` with 422. `after` runs once the commit is done."""
    try:
        result = action()
    except (Forbidden, NotFound):
        transaction.rollback()
        raise
    except DomainError as refused:
        transaction.rollback()
        return render(errors_of(refused)), 422
    transaction.commit()
    if after is not None:
        after(result)
    if success:
        flash(success(result) if callable(success) else success, "success")
    return redirect(redirect_to(result) if callable(redirect_to) else redirect_to, code=303)


def submitted() -> dict[str, Any]:
    """The posted values to refill the form with (lists for fields sent more than once)."""
    return {key: values if len(values) > 1 else values[0] for key, values in request.form.lists()}
