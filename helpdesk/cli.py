"""`flask --app wsgi ...` commands (names: docs/command-line.md)."""

from __future__ import annotations

import click
from flask import Flask

from helpdesk.errors import DomainError
from helpdesk.extensions import db


def _fail(exc: DomainError) -> None:
    db.session.rollback()
    raise click.ClickException(exc.message)


def register_cli(app: Flask) -> None:
    from devtools.graphsim.cli import graph_sim

    app.cli.add_command(graph_sim)
    from helpdesk.metrics.cli import recompute_metrics_command

    app.cli.add_command(recompute_metrics_command)

    @app.cli.command("create-brand")
    @click.argument("slug")
    @click.option("--name", required=True)
    @click.option("--timezone", default="UTC", show_default=True)
    def create_brand_command(slug: str, name: str, timezone: str) -> None:
        """Create a brand (a tenant)."""
        from helpdesk.brands.service import create_brand

        try:
            brand = create_brand(slug, name, timezone)
        except DomainError as exc:
            _fail(exc)
        db.session.commit()
        click.echo(f"brand {brand.slug} created")

    @app.cli.command("create-agent")
    @click.argument("email")
    @click.option("--name", required=True)
    @click.option("--role", type=click.Choice(["agent", "manager", "admin"]), default="agent")
    @click.option("--brand", "brand_slug", required=True)
    @click.option("--password", default=None, help="generated and printed when not given")
    def create_agent_command(
        email: str, name: str, role: str, brand_slug: str, password: str | None
    ) -> None:
        """Create an agent in a brand (or give an existing agent a role there)."""
        from helpdesk.accounts.service import create_agent
        from helpdesk.brands.service import get_brand_by_slug

        try:
            agent, chosen = create_agent(email, name, get_brand_by_slug(brand_slug), role, password)
        except DomainError as exc:
            _fail(exc)
        db.session.commit()
        click.echo(f"agent {agent.email} ({role} of {brand_slug})")
        if password is None and chosen is not None:
            click.echo(f"password: {chosen}")

    @app.cli.command("create-token")
    @click.option("--brand", "brand_slug", required=True)
    @click.option("--name", required=True)
    @click.option(
        "--role",
        type=click.Choice(["agent", "manager", "admin"]),
        default="admin",
        show_default=True,
    )
    def create_token_command(brand_slug: str, name: str, role: str) -> None:
        """Create an API token for a brand; it is printed alone, once, and only its hash is kept."""
        from helpdesk.accounts.tokens import create_token
        from helpdesk.brands.service import get_brand_by_slug

        try:
            _row, token = create_token(get_brand_by_slug(brand_slug), name, role)
        except DomainError as exc:
            _fail(exc)
        db.session.commit()
        click.echo(token)

    @app.cli.command("revoke-token")
    @click.option("--brand", "brand_slug", required=True)
    @click.option("--name", required=True, help="the name it was created with")
    def revoke_token_command(brand_slug: str, name: str) -> None:
        """Revoke a brand's API tokens of this name: they answer 401 from the next request on."""
        from sqlalchemy import select

        from helpdesk.accounts.tokens import ApiToken, revoke_token
        from helpdesk.brands.service import get_brand_by_slug

        try:
            brand = get_brand_by_slug(brand_slug)
        except DomainError as exc:
            _fail(exc)
        ids = db.session.scalars(
            select(ApiToken.id).where(
                ApiToken.brand_id == brand.id,
                ApiToken.name == name.strip(),
                ApiToken.revoked_at.is_(None),
            )
        ).all()
        if not ids:
            raise click.ClickException(f"no active token named {name!r} in {brand_slug}")
        for token_id in ids:
            revoke_token(brand.id, token_id)
        db.session.commit()
        click.echo(f"revoked {len(ids)} token{'s' * (len(ids) != 1)} named {name!r}")

    @app.cli.command("connect-instagram")
    @click.option("--brand", "brand_slug", required=True)
    @click.option("--account-id", required=True)
    @click.option("--access-token", required=True)
    @click.option("--name", default="")
    def connect_instagram_command(
        brand_slug: str, account_id: str, access_token: str, name: str
    ) -> None:
        """Register an Instagram account as a channel of a brand."""
        from helpdesk.brands.service import get_brand_by_slug
        from helpdesk.channels.service import connect_channel

        try:
            channel = connect_channel(
                get_brand_by_slug(brand_slug), "instagram", account_id, access_token, name
            )
        except DomainError as exc:
            _fail(exc)
        db.session.commit()
        click.echo(f"channel {channel.id}: instagram account {channel.account_id}")

    @app.cli.command("seed-demo")
    def seed_demo_command() -> None:
        """Create the demo brand with agents, contacts and conversations (idempotent)."""
        from devtools.seed.demo import seed_demo

        created, passwords = seed_demo()
        db.session.commit()
        click.echo("demo brand created" if created else "demo brand already present")
        for email, password in passwords.items():
            click.echo(f"  {email}  password: {password}")

    @app.cli.command("seed-load")
    @click.option("--brand", "brand_slug", required=True)
    @click.option("--messages", type=click.IntRange(min=1), required=True)
    @click.option("--days", type=click.IntRange(min=1), default=90, show_default=True)
    @click.option("--seed", type=int, default=1, show_default=True)
    def seed_load_command(brand_slug: str, messages: int, days: int, seed: int) -> None:
        """Bulk-create realistic history for benchmarks."""
        from devtools.seed.load import seed_load
        from helpdesk.brands.service import get_brand_by_slug

        try:
            report = seed_load(
                get_brand_by_slug(brand_slug), messages, days=days, seed=seed, progress=True
            )
        except DomainError as exc:
            _fail(exc)
        click.echo(
            f"created {report.messages:,} messages in {report.conversations:,} conversations "
            f"({report.reactions:,} reactions) in {report.seconds:.1f} s"
        )
