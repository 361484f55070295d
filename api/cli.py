"""``flask --app api token ...``: minting, listing and revoking API tokens.

A token's name is what operators type and read back in ``token list``, so a new one is
1 to 64 letters, digits, ``.``, ``_`` or ``-``. Names are printed escaped all the same, in
case a row from before that rule holds a space, a control character or a terminal escape.

Whatever fails, a command says so in one line on stderr and exits with status 1: a traceback
would show the SQL and its parameters, a new token's hash among them.
"""

import re

import click
import sqlalchemy as sa
from flask import current_app
from flask.cli import AppGroup

from . import storage, token_hashing


class TokenCommands(AppGroup):
    """The ``token`` group: every failure of its commands ends as one line, not a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except sa.exc.DBAPIError as error:
            raise click.ClickException(database_failure(error)) from None
        except Exception as error:
            # Its message may hold anything, parameters included: only its kind is shown.
            raise click.ClickException(f"unexpected {type(error).__name__}") from None


def database_failure(error):
    """The driver's own first line (unreachable, read-only, locked), without the statement,
    its parameters or the driver's detail lines, which may quote values."""
    lines = str(error.orig).strip().splitlines() if error.orig is not None else []
    reason = lines[0] if lines else type(error).__name__
    return f"the database failed: {printable(reason)}"


token_cli = TokenCommands("token", help="Create, list and revoke API tokens.")

# What a new token may be called: ASCII letters and digits, ".", "_" and "-", so that no name
# can hold a space at either end, a control character, or a letter that looks like another.
NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
NAME_RULE = "1 to 64 letters (A-Z, a-z), digits, '.', '_' or '-'"

# How much of a name a message quotes; `token list` shows all of it.
QUOTED_CHARS = 64


def printable(text):
    """Text with each character a terminal would not simply show written as Python escapes
    it (``\\n``, ``\\x1b``, ``\\u202e``), so that it prints as what it is, on one line."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def shown(name):
    """A name as a message quotes it: escaped, and cut, so that it stays one short line."""
    cut = "..." if len(name) > QUOTED_CHARS else ""
    return f"'{printable(name[:QUOTED_CHARS])}{cut}'"


def _when(moment):
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "-"


@token_cli.command("create")
@click.argument("name")
def create_token(name):
    """Create a token called NAME and print it once; only its hash is kept."""
    if not NAME.fullmatch(name):
        raise click.ClickException(f"{shown(name)} cannot name a token: a name is {NAME_RULE}")
    secret = token_hashing.new_token(current_app.config["TOKEN_PREFIX"])
    try:
        storage.create_token(name, token_hashing.hash_token(secret))
    except storage.DuplicateName:
        raise click.ClickException(
            f"a token called {shown(name)} already exists; names stay taken after a revoke, so "
            "that `token list` keeps each token's history: pick another name"
        ) from None
    click.echo(f"Created token {shown(name)}. Store it now: it cannot be shown again.", err=True)
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
        name = printable(row.name)
        click.echo(f"{name:<24} {_when(row.created_at):<23} {_when(row.last_used_at):<23} {state}")


@token_cli.command("revoke")
@click.argument("name")
def revoke_token(name):
    """Revoke the token called NAME; every server refuses it from the next request on."""
    # Any name is looked up, so that a row from before the naming rule can still be revoked.
    try:
        changed = storage.revoke_token(name)
    except storage.UnknownName:
        raise click.ClickException(
            f"no token is called {shown(name)}; see: flask --app api token list"
        ) from None
    click.echo(
        f"Revoked token {shown(name)}." if changed else f"Token {shown(name)} was already revoked."
    )


def init_app(app):
    """Add the token commands to the app's ``flask`` CLI."""
    app.cli.add_command(token_cli)
