"""``flask --app api token ...``: minting, listing and revoking API tokens."""

import click
from flask import current_app
from flask.cli import AppGroup

from . import storage, token_hashing

token_cli = AppGroup("token", help="Create, list and revoke API tokens.")


def _when(moment):
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "-"


@token_cli.command("create")
@click.argument("name")
def create_token(name):
    """Create a token called NAME and print it once; only its hash is kept."""
    secret = token_hashing.new_token(current_app.config["TOKEN_PREFIX"])
    try:
        storage.create_token(name, token_hashing.hash_token(secret))
    except storage.DuplicateName:
        raise click.ClickException(
            f"a token called {name!r} already exists; names stay taken after a revoke, so "
            "that `token list` keeps each token's history: pick another name"
        ) from None
    click.echo(f"Created token {name!r}. Store it now: it cannot be shown again.", err=True)
    # Alone on the last line of stdout, so that scripts can capture it with tail -n 1.
    click.echo(secret)


@token_cli.command("list")
def list_tokens():
    """Show every token's name, dates and state, never its secret."""
    rows = storage.list_tokens()
    if not rows:
        click.echo("No tokens yet. Create one with: flask --app api token create NAME")
        return
    click.echo(f"{'NAME':<24} {'CREATED':<23} {'LAST USED':<23} STATE")
    for row in rows:
        state = f"revoked {_when(row.revoked_at)}" if row.revoked_at else "active"
        click.echo(
            f"{row.name:<24} {_when(row.created_at):<23} {_when(row.last_used_at):<23} {state}"
        )


@token_cli.command("revoke")
@click.argument("name")
def revoke_token(name):
    """Revoke the token called NAME; every server refuses it from the next request on."""
    try:
        changed = storage.revoke_token(name)
    except storage.UnknownName:
        raise click.ClickException(
            f"no token is called {name!r}; see: flask --app api token list"
        ) from None
    click.echo(f"Revoked token {name!r}." if changed else f"Token {name!r} was already revoked.")


def init_app(app):
    """Add the token commands to the app's ``flask`` CLI."""
    app.cli.add_command(token_cli)
