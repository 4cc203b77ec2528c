"""`flask --app wsgi create-agent|create-token|revoke-token|invite-agent|reset-password ...`
(docs/command-line.md)."""

from __future__ import annotations

import click
from flask.cli import with_appcontext
from sqlalchemy import select

from helpdesk.accounts import api_tokens, invitations, links
from helpdesk.accounts.actor import Actor
from helpdesk.accounts.service import create_agent
from helpdesk.accounts.tokens import ApiToken
from helpdesk.brands.service import get_brand_by_slug
from helpdesk.cli import fail
from helpdesk.errors import DomainError
from helpdesk.extensions import db


@click.command("create-agent")
@click.argument("email")
@click.option("--name", required=True)
@click.option("--role", type=click.Choice(["agent", "manager", "admin"]), default="agent")
@click.option("--brand", "brand_slug", required=True)
@click.option("--password", default=None, help="generated and printed when not given")
@with_appcontext
def create_agent_command(
    email: str, name: str, role: str, brand_slug: str, password: str | None
) -> None:
    """Create an agent in a brand (or give an existing agent a role there)."""
    try:
        agent, chosen = create_agent(email, name, get_brand_by_slug(brand_slug), role, password)
    except DomainError as exc:
        fail(exc)
    db.session.commit()
    click.echo(f"agent {agent.email} ({role} of {brand_slug})")
    if password is None and chosen is not None:
        click.echo(f"password: {chosen}")


@click.command("create-token")
@click.option("--brand", "brand_slug", required=True)
@click.option("--name", required=True)
@click.option(
    "--role",
    type=click.Choice(["agent", "manager", "admin"]),
    default="admin",
    show_default=True,
)
@with_appcontext
def create_token_command(brand_slug: str, name: str, role: str) -> None:
    """Create an API token for a brand; it is printed alone, once, and only its hash is kept."""
    try:
        brand = get_brand_by_slug(brand_slug)
        _row, token = api_tokens.issue(brand, Actor.system(brand.id), name, role)
    except DomainError as exc:
        fail(exc)
    db.session.commit()
    click.echo(token)


@click.command("revoke-token")
@click.option("--brand", "brand_slug", required=True)
@click.option("--name", required=True, help="the name it was created with")
@with_appcontext
def revoke_token_command(brand_slug: str, name: str) -> None:
    """Revoke a brand's API tokens of this name: they answer 401 from the next request on."""
    try:
        brand = get_brand_by_slug(brand_slug)
    except DomainError as exc:
        fail(exc)
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
        api_tokens.revoke(brand.id, Actor.system(brand.id), token_id)
    db.session.commit()
    click.echo(f"revoked {len(ids)} token{'s' * (len(ids) != 1)} named {name!r}")


@click.command("invite-agent")
@click.argument("email")
@click.option("--brand", "brand_slug", required=True)
@click.option("--role", type=click.Choice(["agent", "manager", "admin"]), default="agent")
@with_appcontext
def invite_agent_command(email: str, brand_slug: str, role: str) -> None:
    """Invite someone to a brand: the invitation URL is printed alone (and e-mailed when
    SMTP_URL is set); it works once, for 7 days."""
    try:
        brand = get_brand_by_slug(brand_slug)
        invitation, token = invitations.invite(Actor.system(brand.id), brand, email, role)
    except DomainError as exc:
        fail(exc)
    db.session.commit()
    url = links.invitation_url(token)
    links.mail_invitation(invitation.email, brand.name, url)
    click.echo(url)


@click.command("reset-password")
@click.argument("email")
@with_appcontext
def reset_password_command(email: str) -> None:
    """Print a one-time URL (one hour) where the agent sets a new password; it is also e-mailed
    when SMTP_URL is set."""
    try:
        _row, token = invitations.start_reset(email)
    except DomainError as exc:
        fail(exc)
    agent_email = email.strip().lower()
    db.session.commit()
    url = links.reset_url(token)
    links.mail_reset(agent_email, url)
    click.echo(url)
