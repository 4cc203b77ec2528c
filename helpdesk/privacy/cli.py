"""`flask --app wsgi purge-expired` (docs/command-line.md): the daily retention purge, now."""

from __future__ import annotations

from dataclasses import asdict

import click
from flask.cli import with_appcontext

from helpdesk.privacy.retention import BrandPurge, purge_expired


def describe(outcome: BrandPurge) -> str:
    """One line per brand: what went, in plain words, or that nothing was due."""
    cutoff = outcome.cutoff.strftime("%Y-%m-%d %H:%M UTC")
    counts = [f"{n} {name.replace('_', ' ')}" for name, n in asdict(outcome.purged).items() if n]
    done = ", ".join(counts) if counts else "nothing to purge"
    return f"brand {outcome.brand_id} ({outcome.brand_name}), older than {cutoff}: {done}"


@click.command("purge-expired")
@click.option("--brand-id", type=int, default=None, help="Only this brand.")
@with_appcontext
def purge_expired_command(brand_id: int | None) -> None:
    """Purge the content older than each brand's retention period (what the daily task does)."""
    report = purge_expired(brand_id=brand_id)
    if not report:
        click.echo("No brand has a retention period: nothing is purged.")
    for outcome in report:
        click.echo(describe(outcome))
