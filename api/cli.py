"""``flask --app api token ...``: minting, listing, rolling and revoking API tokens, and their
use.

A token may get an expiry (``--expires-in 90d``, ``--expires-at 2027-03-01``, or the default
lifetime ``TOKEN_DEFAULT_EXPIRES_IN``), scopes (``--scope errors,stats``) and a rate limit of
its own (``--rate "600 per minute"``); ``token_rules.py`` says what each may be.

A token's name is what operators type and read back in ``token list``, so a new one is
1 to 64 letters, digits, ``.``, ``_`` or ``-``. Names are printed escaped all the same, in
case a row from before that rule holds a space, a control character or a terminal escape.

Whatever fails, a command says so in one line on stderr and exits with status 1: a traceback
would show the SQL and its parameters, a new token's hash among them.
"""

import re
from datetime import timedelta

import click
import sqlalchemy as sa
from flask import current_app
from flask.cli import AppGroup

from . import auth, storage, token_hashing, token_rules
from .config import require


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


token_cli = TokenCommands(
    "token", help="Create, list, roll and revoke API tokens, and see their use."
)

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


def _minute(moment):
    return moment.strftime("%Y-%m-%d %H:%M") if moment else "-"


# token list warns of a token that expires within this.
EXPIRY_WARNING = timedelta(days=7)


@token_cli.command("create")
@click.argument("name")
@click.option("--expires-in", metavar="DURATION", help="Lifetime: a number and s, m, h or d.")
@click.option("--expires-at", metavar="DATE", help="Expiry, UTC: 2027-03-01 or 2027-03-01T12:00.")
@click.option(
    "--scope",
    "scope_values",
    multiple=True,
    metavar="SCOPE",
    help=f"What it may read ({', '.join(auth.SCOPES)}); repeat or join with commas. Default: all.",
)
@click.option("--rate", metavar="LIMIT", help="Its own rate limit, such as '600 per minute'.")
def create_token(name, expires_in, expires_at, scope_values, rate):
    """Create a token called NAME and print it once; only its hash is kept."""
    if not NAME.fullmatch(name):
        raise click.ClickException(f"{shown(name)} cannot name a token: a name is {NAME_RULE}")
    now = storage.clock.utcnow()
    expires, scopes, rate = terms(now, expires_in, expires_at, scope_values, rate)
    secret = token_hashing.new_token(current_app.config["TOKEN_PREFIX"])
    try:
        storage.create_token(name, token_hashing.hash_token(secret), expires, scopes, rate)
    except storage.DuplicateName:
        raise click.ClickException(
            f"a token called {shown(name)} already exists; names stay taken after a revoke, so "
            "that `token list` keeps each token's history: pick another name"
        ) from None
    lasts = f"expires {_when(expires)}" if expires else "never expires"
    click.echo(
        f"Created token {shown(name)} ({lasts}). Store it now: it cannot be shown again.", err=True
    )
    # Alone on the last line of stdout, so that scripts can capture it with tail -n 1.
    click.echo(secret)


def terms(now, expires_in, expires_at, scope_values, rate):
    """The expiry, scopes and rate a new token gets, each checked; one line and status 1 for
    anything that cannot be, before anything is written."""
    try:
        if expires_in and expires_at:
            raise token_rules.BadTerm("give --expires-in or --expires-at, not both")
        if expires_at:
            expires = token_rules.expiry_date(expires_at, now)
        else:
            lifetime = expires_in or current_app.config["TOKEN_DEFAULT_EXPIRES_IN"]
            expires = now + token_rules.duration(lifetime) if lifetime else None
        scopes = token_rules.scopes(scope_values)
        return expires, scopes, token_rules.rate(rate) if rate is not None else None
    except token_rules.BadTerm as bad:
        raise click.ClickException(printable(str(bad))) from None


@token_cli.command("list")
def list_tokens():
    """Show every token: dates, expiry, use, scopes, limit and state, never its secret."""
    now = storage.clock.utcnow()
    rows = storage.list_tokens(now)
    if not rows:
        click.echo("No tokens yet. Create one with: flask --app api token create NAME")
        return
    click.echo(
        f"{'NAME':<24} {'CREATED':<16} {'EXPIRES':<16} {'LAST USED':<16} {'24H':>7} {'30D':>8} "
        f"{'SCOPES':<18} {'RATE':<16} STATE"
    )
    for row, day, month in rows:
        scopes = ",".join(row.scopes.split()) if row.scopes else "all"
        click.echo(
            f"{printable(row.name):<24} {_minute(row.created_at):<16} "
            f"{_minute(row.expires_at) if row.expires_at else 'never':<16} "
            f"{_minute(row.last_used_at):<16} {day:>7,} {month:>8,} {scopes:<18} "
            f"{row.rate_limit or 'default':<16} {state(row, now)}"
        )
        if row.previous_expires_at and row.previous_expires_at > now and not row.revoked_at:
            until = _minute(row.previous_expires_at)
            click.echo(f"{'':<24} and its previous secret, rolled, until {until}")


def state(row, now):
    """A token's state, with a warning when its end is near."""
    if row.revoked_at:
        return f"revoked {_minute(row.revoked_at)}"
    if row.expires_at and row.expires_at <= now:
        return "EXPIRED"
    if row.expires_at and row.expires_at - now <= EXPIRY_WARNING:
        left = row.expires_at - now
        days = left.days
        return f"active, EXPIRES IN {days} DAYS" if days >= 1 else "active, EXPIRES TODAY"
    return "active"


@token_cli.command("usage")
@click.argument("name")
@click.option("--days", default=30, show_default=True, help="How many days back.")
def token_usage(name, days):
    """Print the requests the token called NAME made each UTC day, oldest first."""
    if days < 1:
        raise click.ClickException("--days must be 1 or more")
    try:
        series = storage.token_usage(name, days)
    except storage.UnknownName:
        raise unknown(name) from None
    click.echo(f"{'DAY (UTC)':<10} {'REQUESTS':>9}")
    for day, count in series:
        click.echo(f"{day.isoformat():<10} {count:>9,}")
    click.echo(f"{'total':<10} {sum(count for _, count in series):>9,}")


@token_cli.command("roll")
@click.argument("name")
@click.option(
    "--grace",
    default="1h",
    show_default=True,
    metavar="DURATION",
    help="How long the old secret keeps working; 0 ends it now.",
)
def roll_token(name, grace):
    """Give the token called NAME a new secret, printed once; the old one works for GRACE."""
    try:
        lasting = timedelta(0) if grace.strip() == "0" else token_rules.duration(grace, "a grace")
    except token_rules.BadTerm as bad:
        raise click.ClickException(printable(str(bad))) from None
    secret = token_hashing.new_token(current_app.config["TOKEN_PREFIX"])
    try:
        until = storage.roll_token(name, token_hashing.hash_token(secret), lasting)
    except storage.UnknownName:
        raise unknown(name) from None
    except storage.NotLive:
        raise click.ClickException(
            f"the token called {shown(name)} is revoked: create a new one instead"
        ) from None
    old = f"the old one works until {_when(until)}" if until else "the old one stops now"
    click.echo(f"Rolled token {shown(name)}: {old}. Store the new one now.", err=True)
    click.echo(secret)


def unknown(name):
    return click.ClickException(
        f"no token is called {shown(name)}; see: flask --app api token list"
    )


@token_cli.command("revoke")
@click.argument("name")
def revoke_token(name):
    """Revoke the token called NAME; every server refuses it from the next request on."""
    # Any name is looked up, so that a row from before the naming rule can still be revoked.
    try:
        changed = storage.revoke_token(name)
    except storage.UnknownName:
        raise unknown(name) from None
    click.echo(
        f"Revoked token {shown(name)}." if changed else f"Token {shown(name)} was already revoked."
    )


def init_app(app):
    """Add the token commands to the app's ``flask`` CLI, once the default lifetime is one."""
    require(
        app.config,
        "TOKEN_DEFAULT_EXPIRES_IN",
        lambda text: not text or _is_duration(text),
        f"empty (never) or {token_rules.DURATION_RULE}",
    )
    app.cli.add_command(token_cli)


def _is_duration(text):
    try:
        token_rules.duration(text)
    except token_rules.BadTerm:
        return False
    return True
