"""A contact's page: their profile, what agents keep about them (name, attributes, notes), their
conversations and tickets; for admins the export of everything held and its erasure.

Every agent of the brand may read and edit it (agents keep the notes); export and erase are for
admins. A refused edit re-renders the page (422) with the message next to the field."""

from __future__ import annotations

from typing import Any

from flask import Response, abort, render_template, request, url_for
from flask.typing import ResponseReturnValue

from helpdesk import transaction
from helpdesk.accounts.models import Role
from helpdesk.contacts import export as exports
from helpdesk.contacts import service as contacts
from helpdesk.dm.models import Contact
from helpdesk.dm.visibility import may_see
from helpdesk.errors import InvalidField, NotFound
from helpdesk.web.console import bp
from helpdesk.web.console.context import actor, is_admin, require
from helpdesk.web.settings.forms import attempt, submitted

MAX_ROWS = contacts.MAX_ATTRIBUTES + 10
NEW_ROWS = 3
CONFIRM = "confirm"


def _contact_or_404(contact_id: int) -> Contact:
    try:
        return contacts.get(actor(), contact_id)
    except NotFound:
        abort(404)


def _page(contact: Contact, errors: dict[str, str] | None = None, form: Any = None) -> str:
    role = actor().role or Role.AGENT
    conversations = [c for c in contacts.conversations_of(contact) if may_see(role, c)]
    rows = [(key, contacts.shown(value)) for key, value in (contact.attributes or {}).items()]
    return render_template(
        "console/contact.html",
        contact=contact,
        conversations=conversations,
        tickets=contacts.tickets_of([c.id for c in conversations]),
        rows=rows + [("", "")] * NEW_ROWS,
        form=form,
        errors=errors or {},
        admin=is_admin(),
    )


@bp.get("/contacts/<int:contact_id>")
def contact_page(contact_id: int) -> ResponseReturnValue:
    return _page(_contact_or_404(contact_id))


def _rows() -> list[tuple[str, str]] | None:
    """The attribute rows posted (`attr_key_N`, `attr_value_N`; a ticked `attr_remove_N` drops
    the row), in order; None when the form did not show them (`attr_rows` absent)."""
    count = request.form.get("attr_rows")
    if count is None:
        return None
    if not (count.isascii() and count.isdigit()) or int(count) > MAX_ROWS:
        abort(400, description="attr_rows: a number of rows")
    return [
        (request.form.get(f"attr_key_{n}", ""), request.form.get(f"attr_value_{n}", ""))
        for n in range(int(count))
        if not request.form.get(f"attr_remove_{n}")
    ]


@bp.post("/contacts/<int:contact_id>")
def contact_save(contact_id: int) -> ResponseReturnValue:
    contact = _contact_or_404(contact_id)
    form, rows = request.form, _rows()

    def save() -> Contact:
        """Only the fields the form sent change."""
        values: dict[str, Any] = {name: form[name] for name in ("name", "notes") if name in form}
        if rows is not None:
            values["attributes"] = contacts.attributes_from_rows(rows, contact.attributes or {})
        return contacts.update(contact, actor(), **values)

    here = url_for("console.contact_page", contact_id=contact_id)
    return attempt(
        save, "Contact saved.", here, lambda errors: _page(contact, errors, _refill(rows))
    )


def _refill(rows: list[tuple[str, str]] | None) -> dict[str, Any]:
    """What the agent typed, to show again after a refusal (the rows as they were, if none)."""
    values = submitted()
    if rows is not None:
        values["rows"] = rows + [("", "")] * NEW_ROWS
    return values


@bp.get("/contacts/<int:contact_id>/export")
def contact_export(contact_id: int) -> ResponseReturnValue:
    require(Role.ADMIN)
    contact = _contact_or_404(contact_id)
    document = exports.export(contact, actor())
    transaction.commit()
    return Response(
        exports.as_json(document),
        mimetype="application/json",
        headers={"Content-Disposition": f'attachment; filename="contact-{contact_id}.json"'},
    )


@bp.post("/contacts/<int:contact_id>/erase")
def contact_erase(contact_id: int) -> ResponseReturnValue:
    require(Role.ADMIN)
    contact = _contact_or_404(contact_id)

    def erase() -> dict[str, int]:
        if request.form.get(CONFIRM) != "1":  # the checkbox's value, nothing else
            raise InvalidField(CONFIRM, "Tick the box to confirm: erasing cannot be undone")
        return contacts.erase(contact, actor())

    def said(counts: dict[str, int]) -> str:
        return f"This person's data was erased ({counts['messages']} messages)."

    here = url_for("console.contact_page", contact_id=contact_id)
    return attempt(erase, said, here, lambda errors: _page(contact, errors))
