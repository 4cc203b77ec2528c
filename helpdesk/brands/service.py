"""Creating and finding brands."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select

from helpdesk.brands.models import Brand
from helpdesk.errors import AlreadyExists, NotFound, ValidationError
from helpdesk.extensions import db


def create_brand(slug: str, name: str, timezone: str = "UTC") -> Brand:
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError(f"unknown time zone {timezone!r}") from exc
    if not slug or not slug.replace("-", "").isalnum() or slug != slug.lower():
        raise ValidationError("a brand slug is lower-case letters, digits and dashes")
    if db.session.scalar(select(Brand.id).where(Brand.slug == slug)):
        raise AlreadyExists(f"brand {slug!r} already exists")
    brand = Brand(slug=slug, name=name, timezone=timezone, hidden_words=[])
    db.session.add(brand)
    db.session.flush()
    return brand


def get_brand_by_slug(slug: str) -> Brand:
    brand = db.session.scalar(select(Brand).where(Brand.slug == slug))
    if brand is None:
        raise NotFound(f"no brand {slug!r}")
    return brand


def get_brand(brand_id: int) -> Brand:
    brand = db.session.get(Brand, brand_id)
    if brand is None:
        raise NotFound("no such brand")
    return brand
