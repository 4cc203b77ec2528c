"""`flask --app wsgi seed-demo|seed-load ...` (docs/command-line.md)."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from devtools.seed.demo import seed_demo
from devtools.seed.load import seed_load
from helpdesk.brands.service import get_brand_by_slug
from helpdesk.cli import fail
from helpdesk.errors import DomainError
from helpdesk.extensions import db


@click.command("seed-demo")
@with_appcontext
def seed_demo_command() -> None:
    """Create the demo brand with agents, contacts and conversations (idempotent)."""
    created, passwords = seed_demo()
    db.session.commit()
    click.echo("demo brand created" if created else "demo brand already present")
    for email, password in passwords.items():
        click.echo(f"  {email}  password: {password}")


@click.command("seed-load")
@click.option("--brand", "brand_slug", required=True)
@click.option("--messages", type=click.IntRange(min=1), required=True)
@click.option("--days", type=click.IntRange(min=1), default=90, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@with_appcontext
def seed_load_command(brand_slug: str, messages: int, days: int, seed: int) -> None:
    """Bulk-create realistic history for benchmarks."""
    try:
        report = seed_load(
            get_brand_by_slug(brand_slug), messages, days=days, seed=seed, progress=True
        )
    except DomainError as exc:
        fail(exc)
    click.echo(
        f"created {report.messages:,} messages in {report.conversations:,} conversations "
        f"({report.reactions:,} reactions) in {report.seconds:.1f} s"
    )
