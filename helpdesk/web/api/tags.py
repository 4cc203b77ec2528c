"""Tags and their keywords: read with any token, changed with a manager or admin token.

The same service as the settings page (`tickets.tag_settings`): a name another tag has, whatever
its case, is a 409 `already_exists` naming the field, as a taken canned-reply shortcode is.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from helpdesk import transaction
from helpdesk.accounts.models import Role
from helpdesk.brands.service import get_brand
from helpdesk.tickets import tag_settings
from helpdesk.tickets.models import Tag
from helpdesk.tickets.tags import DEFAULT_COLOUR, MAX_KEYWORD_CHARS, MAX_NAME_CHARS
from helpdesk.web.api.auth import actor, brand_id, requires
from helpdesk.web.api.blueprint import api_blueprint
from helpdesk.web.api.lookups import owned
from helpdesk.web.api.pagination import Order, paginate
from helpdesk.web.api.schemas import PageQuerySchema, Text, page_of

bp = api_blueprint("tags", "Tags: colours and the keywords that apply them")

TAGS = Order("tags", Tag.id, Tag.name_key, str, descending=False)


class TagSchema(Schema):
    id = fields.Integer(dump_only=True)
    name = Text(required=True, validate=validate.Length(1, MAX_NAME_CHARS))
    colour = Text(load_default=DEFAULT_COLOUR, metadata={"description": "#rrggbb"})
    keywords = fields.List(
        Text(validate=validate.Length(1, MAX_KEYWORD_CHARS)),
        load_default=list,
        validate=validate.Length(max=tag_settings.MAX_KEYWORDS),
        metadata={"description": "incoming messages containing one of these words get the tag"},
    )


class TagPatchSchema(Schema):
    name = Text(validate=validate.Length(1, MAX_NAME_CHARS))
    colour = Text(metadata={"description": "#rrggbb"})
    keywords = fields.List(
        Text(validate=validate.Length(1, MAX_KEYWORD_CHARS)),
        validate=validate.Length(max=tag_settings.MAX_KEYWORDS),
        metadata={"description": "replaces the tag's keywords"},
    )


def _present(rows: list[Tag]) -> list[dict[str, Any]]:
    keywords = tag_settings.keywords_of(tag.id for tag in rows)
    return [tag_settings.to_dict(tag, keywords[tag.id]) for tag in rows]


@bp.route("/tags", methods=["GET"])
@bp.arguments(PageQuerySchema, location="query")
@bp.response(200, page_of(TagSchema, "TagPage"))
def list_tags(args: dict[str, Any]) -> dict[str, Any]:
    """The brand's tags by name, with their keywords."""
    rows, cursor = paginate(tag_settings.tags_query(brand_id()), TAGS, args)
    return {"items": _present(rows), "next_cursor": cursor}


@bp.route("/tags", methods=["POST"])
@requires(Role.MANAGER)
@bp.arguments(TagSchema)
@bp.response(201, TagSchema)
def create_tag(data: dict[str, Any]) -> dict[str, Any]:
    """A new tag; its keywords start tagging incoming messages at once."""
    tag = tag_settings.save_tag(
        get_brand(brand_id()), actor(), data["name"], data["colour"], data["keywords"]
    )
    transaction.commit()
    return tag_settings.to_dict(tag)


@bp.route("/tags/<id:tag_id>", methods=["GET"])
@bp.response(200, TagSchema)
def get_tag(tag_id: int) -> dict[str, Any]:
    """One tag."""
    return tag_settings.to_dict(owned(Tag, tag_id))


@bp.route("/tags/<id:tag_id>", methods=["PATCH"])
@requires(Role.MANAGER)
@bp.arguments(TagPatchSchema)
@bp.response(200, TagSchema)
def patch_tag(data: dict[str, Any], tag_id: int) -> dict[str, Any]:
    """Rename, recolour or replace the keywords; fields left out stay as they are."""
    tag = owned(Tag, tag_id)
    tag = tag_settings.save_tag(
        get_brand(brand_id()),
        actor(),
        data.get("name", tag.name),
        data.get("colour"),
        data.get("keywords"),
        tag=tag,
    )
    transaction.commit()
    return tag_settings.to_dict(tag)


@bp.route("/tags/<id:tag_id>", methods=["DELETE"])
@requires(Role.MANAGER)
@bp.response(204)
def delete_tag(tag_id: int) -> None:
    """Delete the tag: it leaves every ticket, and its keywords stop applying."""
    tag_settings.delete_tag(owned(Tag, tag_id), actor())
    transaction.commit()
