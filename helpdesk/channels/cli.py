"""`flask --app wsgi connect-instagram ...`, `refresh-instagram-tokens` (docs/command-line.md)."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from helpdesk.brands.service import get_brand_by_slug
from helpdesk.channels import tokens_refresh
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


@click.command("refresh-instagram-tokens")
@with_appcontext
def refresh_instagram_tokens_command() -> None:
    """Refresh the Instagram tokens that are due now (what the daily beat task does)."""
    outcomes = tokens_refresh.refresh_due()
    if not outcomes:
        click.echo("No Instagram token is due for a refresh.")
    for outcome in outcomes:
        if outcome.result == tokens_refresh.REFRESHED:
            until = outcome.expires_at.strftime("%Y-%m-%d %H:%M UTC") if outcome.expires_at else "?"
            click.echo(
                f"channel {outcome.channel_id} ({outcome.label}): refreshed, valid until {until}"
            )
        elif outcome.result == tokens_refresh.REFUSED:
            click.echo(
                f"channel {outcome.channel_id} ({outcome.label}): refused, an admin must "
                f"reconnect it ({outcome.reason})"
            )
        else:
            click.echo(
                f"channel {outcome.channel_id} ({outcome.label}): not refreshed ({outcome.reason})"
            )
