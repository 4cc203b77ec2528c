"""`flask --app wsgi connect-instagram ...` (docs/command-line.md)."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from helpdesk.brands.service import get_brand_by_slug
from helpdesk.channels.service import connect_channel
from helpdesk.cli import fail
from helpdesk.errors import DomainError
from helpdesk.extensions import db


@click.command("connect-instagram")
@click.option("--brand", "brand_slug", required=True)
@click.option("--account-id", required=True)
@click.option("--access-token", required=True)
@click.option("--name", default="")
@with_appcontext
def connect_instagram_command(
    brand_slug: str, account_id: str, access_token: str, name: str
) -> None:
    """Register an Instagram account as a channel of a brand."""
    try:
        channel = connect_channel(
            get_brand_by_slug(brand_slug), "instagram", account_id, access_token, name
        )
    except DomainError as exc:
        fail(exc)
    db.session.commit()
    click.echo(f"channel {channel.id}: instagram account {channel.account_id}")
