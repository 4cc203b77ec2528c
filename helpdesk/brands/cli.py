"""`flask --app wsgi create-brand ...` (docs/command-line.md)."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from helpdesk.brands.service import create_brand
from helpdesk.cli import fail
from helpdesk.errors import DomainError
from helpdesk.extensions import db


@click.command("create-brand")
@click.argument("slug")
@click.option("--name", required=True)
@click.option("--timezone", default="UTC", show_default=True)
@with_appcontext
def create_brand_command(slug: str, name: str, timezone: str) -> None:
    """Create a brand (a tenant)."""
    try:
        brand = create_brand(slug, name, timezone)
    except DomainError as exc:
        fail(exc)
    db.session.commit()
    click.echo(f"brand {brand.slug} created")
