"""Token storage: the hashes of the tokens, their names, dates, scopes and limits; never a secret.

Every change of a token (created, revoked, rolled) bumps the one row of ``token_version`` in
the same transaction, so that each process's kept tokens (``token_cache.py``) can tell, from
any statement that reads the version, that what it keeps may be stale.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app, has_app_context

from . import clock
from .counter_reads import counts_per_day, start_of, whole_hour_bound
from .engine import reading
from .tables import counter_hours, db, token_version, tokens

# Usage of a token is counted like hits, in a counter of its own (counter_writer.py).
USAGE_PREFIX = "token:"

VERSION = sa.select(token_version.c.version).where(token_version.c.id == 1)

# Built once: a token the process has not kept yet is looked up with it. The version comes
# from the same statement, one row whether a token matches or not, so that what is kept is
# tagged with the version it was read at.
_matches = sa.or_(
    tokens.c.token_hash == sa.bindparam("token_hash"),
    tokens.c.previous_hash == sa.bindparam("token_hash"),
)
FIND_TOKEN = (
    sa.select(
        token_version.c.version,
        tokens.c.id,
        tokens.c.name,
        tokens.c.scopes,
        tokens.c.rate_limit,
        tokens.c.expires_at,
        tokens.c.revoked_at,
        tokens.c.last_used_at,
        (tokens.c.token_hash == sa.bindparam("token_hash")).label("current"),
        tokens.c.previous_expires_at,
    )
    .select_from(token_version.outerjoin(tokens, _matches))
    .where(token_version.c.id == 1)
)
BUMP_VERSION = (
    token_version.update()
    .values(version=token_version.c.version + 1)
    .returning(token_version.c.version)
)


class DuplicateName(Exception):
    """A token with this name already exists."""


class UnknownName(Exception):
    """No token has this name."""


class NotLive(Exception):
    """The token was revoked: it cannot be rolled."""


@dataclass(frozen=True)
class Token:
    """What a request's check needs of a token: who it is, what it may do, until when."""

    id: int
    name: str
    #: The scope names it is limited to; None: every scope.
    scopes: frozenset | None
    #: Its own rate limit, in Flask-Limiter's notation; None: RATELIMIT_PER_TOKEN.
    rate_limit: str | None
    expires_at: datetime | None
    revoked: bool
    #: The secret presented was the one before the last roll, good until ``works_until``.
    previous: bool
    works_until: datetime | None
    last_used_at: datetime | None

    @property
    def usage_counter(self):
        return usage_counter(self.id)


def usage_counter(token_id):
    """The counter a token's requests are counted in."""
    return f"{USAGE_PREFIX}{token_id}"


def scopes_text(scopes):
    return None if scopes is None else " ".join(sorted(scopes))


def _token(row):
    scopes = None if row.scopes is None else frozenset(row.scopes.split())
    return Token(
        id=row.id,
        name=row.name,
        scopes=scopes,
        rate_limit=row.rate_limit,
        expires_at=row.expires_at,
        revoked=row.revoked_at is not None,
        previous=not row.current,
        works_until=None if row.current else row.previous_expires_at,
        last_used_at=row.last_used_at,
    )


def look_up_token(token_hash):
    """``(the token whose current or previous secret has this hash, or None; the token
    version the statement read)``. Whether it may be used now is the caller's to decide."""
    with reading() as conn:
        row = conn.execute(FIND_TOKEN, {"token_hash": token_hash}).one()
    return (None if row.id is None else _token(row)), row.version


def read_version():
    """The token version: it moves whenever any token changes."""
    with reading() as conn:
        return conn.execute(VERSION).scalar_one()


def create_token(name, token_hash, expires_at=None, scopes=None, rate_limit=None):
    """Store a new token's hash under a unique name, with what it may do and until when."""
    try:
        with db.engine.begin() as conn:
            conn.execute(
                tokens.insert().values(
                    name=name,
                    token_hash=token_hash,
                    created_at=clock.utcnow(),
                    expires_at=expires_at,
                    scopes=scopes_text(scopes),
                    rate_limit=rate_limit,
                )
            )
            version = conn.execute(BUMP_VERSION).scalar_one()
    except sa.exc.IntegrityError as e:
        raise DuplicateName(name) from e
    _tell(version)


def revoke_token(name):
    """Mark a token revoked, both its secrets; return False when it already was."""
    with db.engine.begin() as conn:
        row = conn.execute(
            sa.select(tokens.c.id, tokens.c.revoked_at).where(tokens.c.name == name)
        ).first()
        if row is None:
            raise UnknownName(name)
        if row.revoked_at is not None:
            return False
        conn.execute(tokens.update().where(tokens.c.id == row.id).values(revoked_at=clock.utcnow()))
        version = conn.execute(BUMP_VERSION).scalar_one()
    _tell(version)
    return True


def roll_token(name, token_hash, grace):
    """Give a live token a new secret; the one it replaces works for ``grace`` more, and the
    one before that, if still in its grace, stops now. Returns when the old one stops."""
    now = clock.utcnow()
    until = now + grace if grace > timedelta(0) else None
    with db.engine.begin() as conn:
        row = conn.execute(
            sa.select(tokens.c.id, tokens.c.revoked_at, tokens.c.token_hash).where(
                tokens.c.name == name
            )
        ).first()
        if row is None:
            raise UnknownName(name)
        if row.revoked_at is not None:
            raise NotLive(name)
        conn.execute(
            tokens.update()
            .where(tokens.c.id == row.id)
            .values(
                token_hash=token_hash,
                previous_hash=row.token_hash if until else None,
                previous_expires_at=until,
            )
        )
        version = conn.execute(BUMP_VERSION).scalar_one()
    _tell(version)
    return until


def _tell(version):
    """This process's own kept tokens learn of its change at once; other processes, within
    token_cache.FRESH_FOR."""
    if has_app_context():
        cache = current_app.extensions.get("token_cache")
        if cache is not None:
            cache.observe(version, clock.seconds())


def list_tokens(now=None):
    """Every token, oldest first, with its requests over the last 24 hours (the current hour
    and the 23 before) and the last 30 days (the current day and the 29 before); the hashes
    stay in the database."""
    now = now or clock.utcnow()
    day = clock.hour_of(now) - timedelta(hours=23)
    month = start_of(now.date() - timedelta(days=29))
    usage = _usage_since(month, day)
    with db.engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                tokens.c.id,
                tokens.c.name,
                tokens.c.created_at,
                tokens.c.last_used_at,
                tokens.c.revoked_at,
                tokens.c.expires_at,
                tokens.c.scopes,
                tokens.c.rate_limit,
                tokens.c.previous_expires_at,
            ).order_by(tokens.c.created_at, tokens.c.id)
        ).all()
    return [(row, *usage.get(usage_counter(row.id), (0, 0))) for row in rows]


def _usage_since(month, day):
    """``{counter: (requests from the hour day on, requests from the hour month on)}`` of
    every token."""
    hour = counter_hours.c.hour
    recent = sa.case((hour > whole_hour_bound(day), counter_hours.c.value), else_=0)
    query = (
        sa.select(counter_hours.c.name, sa.func.sum(recent), sa.func.sum(counter_hours.c.value))
        .where(counter_hours.c.name.startswith(USAGE_PREFIX), hour > whole_hour_bound(month))
        .group_by(counter_hours.c.name)
    )
    with db.engine.connect() as conn:
        return {name: (int(day), int(month)) for name, day, month in conn.execute(query)}


def token_usage(name, days, now=None):
    """The token called ``name``'s requests per UTC day, the last ``days`` days, oldest first."""
    now = now or clock.utcnow()
    with db.engine.connect() as conn:
        token_id = conn.execute(sa.select(tokens.c.id).where(tokens.c.name == name)).scalar()
    if token_id is None:
        raise UnknownName(name)
    return counts_per_day(usage_counter(token_id), days, now)
