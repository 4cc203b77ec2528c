"""`flask --app wsgi ...` commands (names: docs/command-line.md): each domain's cli.py holds its
own, and this module registers them on the app."""

from __future__ import annotations

from typing import NoReturn

import click
from flask import Flask

from helpdesk.errors import DomainError
from helpdesk.extensions import db


def fail(exc: DomainError) -> NoReturn:
    """A refused command changes nothing and exits non-zero with the reason."""
    db.session.rollback()
    raise click.ClickException(exc.message)


def register_cli(app: Flask) -> None:
    # The domains' cli modules import `fail` from here: loaded at the top, they would be a cycle.
    from devtools.graphsim.cli import graph_sim
    from devtools.seed.cli import seed_demo_command, seed_load_command
    from helpdesk.accounts.cli import (
        create_agent_command,
        create_token_command,
        invite_agent_command,
        reset_password_command,
        revoke_token_command,
    )
    from helpdesk.brands.cli import create_brand_command
    from helpdesk.channels.cli import connect_instagram_command, refresh_instagram_tokens_command
    from helpdesk.metrics.cli import recompute_metrics_command
    from helpdesk.privacy.cli import purge_expired_command

    for command in (
        graph_sim,
        recompute_metrics_command,
        create_brand_command,
        create_agent_command,
        create_token_command,
        revoke_token_command,
        invite_agent_command,
        reset_password_command,
        connect_instagram_command,
        refresh_instagram_tokens_command,
        seed_demo_command,
        seed_load_command,
        purge_expired_command,
    ):
        app.cli.add_command(command)
