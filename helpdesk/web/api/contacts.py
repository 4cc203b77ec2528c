"""Contacts: list and search, read and edit what agents keep (name, attributes, notes), and for
admins the export of everything held about a person and its erasure."""

from __future__ import annotations

from typing import Any

from flask import Response
from marshmallow import Schema, fields, validate

from helpdesk import transaction
from helpdesk.accounts.models import Role
from helpdesk.contacts import export as exports
from helpdesk.contacts import service as contacts
from helpdesk.dm.models import Contact
from helpdesk.keyset import Order
from helpdesk.web.api.auth import actor, brand_id, requires
from helpdesk.web.api.blueprint import api_blueprint
from helpdesk.web.api.lookups import owned
from helpdesk.web.api.pagination import paginate
from helpdesk.web.api.schemas import ContactSchema, PageQuerySchema, Text, page_of

bp = api_blueprint("contacts", "Contacts, their export and erasure")

CONTACTS = Order("contacts", Contact.id)


class ContactQuerySchema(PageQuerySchema):
    q = Text(
        validate=validate.Length(max=200),
        metadata={"description": "part of a name, a username or a platform id"},
    )


class ContactDetailSchema(ContactSchema):
    attributes = fields.Dict(
        keys=fields.String(), metadata={"description": "name → text, number or true/false"}
    )
    notes = fields.String(allow_none=True)


class ContactPatchSchema(Schema):
    name = Text(allow_none=True, metadata={"description": "up to 200 characters; null clears"})
    attributes = fields.Raw(
        allow_none=True,
        metadata={
            "description": "replaces all attributes: at most 50, names of 1 to 64 characters, "
            "values text (up to 500 characters), numbers or true/false"
        },
    )
    notes = Text(allow_none=True, metadata={"description": "up to 10,000 characters"})


class ErasedSchema(Schema):
    erased = fields.Boolean(required=True)
    messages = fields.Integer()
    edits = fields.Integer()
    reactions = fields.Integer()
    pending_actions = fields.Integer()
    raw_deliveries = fields.Integer()
    live_events = fields.Integer()
    outgoing_deliveries = fields.Integer()
    quotes = fields.Integer()


def _contact(contact_id: int) -> Contact:
    """The brand's contact (checked with the path), that the token's role may see."""
    return contacts.get(actor(), owned(Contact, contact_id).id)


@bp.route("/contacts", methods=["GET"])
@bp.arguments(ContactQuerySchema, location="query")
@bp.response(200, page_of(ContactDetailSchema, "ContactPage"))
def list_contacts(args: dict[str, Any]) -> dict[str, Any]:
    """The brand's contacts, newest first; `q` matches part of a name, username or platform id."""
    query = contacts.search(brand_id(), args.get("q", ""), actor().role or Role.AGENT)
    rows, cursor = paginate(query, CONTACTS, args)
    return {"items": [contacts.to_dict(row) for row in rows], "next_cursor": cursor}


@bp.route("/contacts/<id:contact_id>", methods=["GET"])
@bp.response(200, ContactDetailSchema)
def get_contact(contact_id: int) -> dict[str, Any]:
    return contacts.to_dict(_contact(contact_id))


@bp.route("/contacts/<id:contact_id>", methods=["PATCH"])
@bp.arguments(ContactPatchSchema)
@bp.response(200, ContactDetailSchema)
def patch_contact(data: dict[str, Any], contact_id: int) -> dict[str, Any]:
    """Change the given fields (agents keep notes, so an agent token may); `attributes` replaces
    the whole set. A refused field changes nothing (422 naming it)."""
    contact = contacts.update(_contact(contact_id), actor(), **data)
    transaction.commit()
    return contacts.to_dict(contact)


@bp.route("/contacts/<id:contact_id>/export", methods=["GET"])
@requires(Role.ADMIN)
@bp.response(200, description="one JSON document, as an attachment")
def export_contact(contact_id: int) -> Response:
    """Everything held about the contact (see the document's `about`); audited."""
    document = exports.export(_contact(contact_id), actor())
    transaction.commit()
    return Response(
        exports.as_json(document),
        mimetype="application/json",
        headers={"Content-Disposition": f'attachment; filename="contact-{contact_id}.json"'},
    )


@bp.route("/contacts/<id:contact_id>/erase", methods=["POST"])
@requires(Role.ADMIN)
@bp.response(202, ErasedSchema)
def erase_contact(contact_id: int) -> dict[str, Any]:
    """Erase everything held about the person; tickets and metric figures stay, anonymous."""
    counts = contacts.erase(_contact(contact_id), actor())
    transaction.commit()
    return {"erased": True, **counts}
