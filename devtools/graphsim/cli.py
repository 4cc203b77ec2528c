"""`python -m devtools.graphsim ...`, and `flask --app wsgi graph-sim ...` once registered."""

from __future__ import annotations

import click

from devtools.graphsim import server, webhooks


def _app_secret(given: str | None) -> str:
    """The option or INSTAGRAM_APP_SECRET; under `flask`, the app's own configured secret."""
    if given:
        return given
    from flask.cli import ScriptInfo

    info = click.get_current_context().find_object(ScriptInfo)
    if info is not None:
        secret = info.load_app().config.get("INSTAGRAM_APP_SECRET")
        if secret:
            return secret
    raise click.UsageError("give the app secret as an option or set INSTAGRAM_APP_SECRET")


def _attachment(value: str) -> dict:
    kind, sep, url = value.partition(":")
    if not sep or kind not in ("image", "video", "audio", "file", "share", "story_mention"):
        raise click.BadParameter(f"{value!r}: use TYPE:URL, e.g. image:https://...")
    return {"type": kind, "url": url}


@click.group("graph-sim")
def graph_sim() -> None:
    """A local stand-in for Meta: the Graph API the app sends through, and customer webhooks."""


@graph_sim.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8081, show_default=True)
@click.option("--echo-to", default=None, help="the app's webhook URL: echo every send there")
@click.option("--app-secret", envvar="INSTAGRAM_APP_SECRET", default=None, help="signs echoes")
@click.option("--app-id", default=server.DEFAULT_APP_ID, show_default=True)
def serve_command(
    host: str, port: int, echo_to: str | None, app_secret: str | None, app_id: str
) -> None:
    """Serve the simulated Graph API; point GRAPH_API_BASE at http://HOST:PORT/v25.0."""
    if echo_to:
        app_secret = _app_secret(app_secret)
    click.echo(f"Graph API simulator on http://{host}:{port}/v25.0 (control: /_sim/requests)")
    if echo_to:
        click.echo(f"echoing sends to {webhooks.webhook_url(echo_to)}")
    server.serve(
        host,
        port,
        echo_to=webhooks.webhook_url(echo_to) if echo_to else None,
        app_secret=app_secret,
        app_id=app_id,
    )


@graph_sim.command("send-dm")
@click.option(
    "--app",
    "--url",
    "app_url",
    default="http://127.0.0.1:5000",
    show_default=True,
    help="the app's base URL or its webhook URL",
)
@click.option("--from", "sender_id", required=True, help="the customer's Instagram-scoped id")
@click.option("--text", default=None)
@click.option("--attachment", "attachments", multiple=True, help="TYPE:URL, repeatable")
@click.option("--account", "account_id", default=webhooks.DEMO_ACCOUNT_ID, show_default=True)
@click.option("--mid", default=None, help="the message id (generated when not given)")
@click.option("--reply-to", "reply_to_mid", default=None, help="mid of the quoted message")
@click.option("--secret", envvar="INSTAGRAM_APP_SECRET", default=None)
def send_dm_command(
    app_url: str,
    sender_id: str,
    text: str | None,
    attachments: tuple[str, ...],
    account_id: str,
    mid: str | None,
    reply_to_mid: str | None,
    secret: str | None,
) -> None:
    """Post a signed customer DM to the app's Instagram webhook, as Meta would."""
    if not text and not attachments:
        raise click.UsageError("give --text, --attachment or both")
    posted = webhooks.send_dm(
        app_url,
        _app_secret(secret),
        account_id=account_id,
        sender_id=sender_id,
        text=text,
        attachments=[_attachment(a) for a in attachments] or None,
        mid=mid,
        reply_to_mid=reply_to_mid,
    )
    click.echo(f"{posted.status_code} mid={posted.mid}")
    if posted.status_code >= 300:
        raise click.ClickException(f"the app answered {posted.status_code}: {posted.response_text}")
