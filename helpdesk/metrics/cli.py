"""`flask --app wsgi recompute-metrics --brand SLUG [--since DATE]` (docs/command-line.md)."""

from __future__ import annotations

from datetime import datetime

import click
from flask.cli import with_appcontext

from helpdesk.brands.service import get_brand_by_slug
from helpdesk.errors import DomainError
from helpdesk.extensions import db
from helpdesk.metrics.service import recompute_metrics


@click.command("recompute-metrics")
@click.option("--brand", "brand_slug", required=True)
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="first brand-local date to rebuild (default: the whole history)",
)
@with_appcontext
def recompute_metrics_command(brand_slug: str, since: datetime | None) -> None:
    """Rebuild a brand's metric events, rollups and volume from the ticket history."""
    try:
        brand = get_brand_by_slug(brand_slug)
    except DomainError as exc:
        db.session.rollback()
        raise click.ClickException(exc.message) from exc
    report = recompute_metrics(brand, since.date() if since else None, progress=True)
    click.echo(
        f"recomputed {report.tickets:,} tickets: {report.metric_events:,} metric events, "
        f"{report.rollup_days:,} rollup days, {report.volume_days:,} volume days "
        f"in {report.seconds:.1f} s"
    )
