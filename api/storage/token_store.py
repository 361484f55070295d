"""Token storage: the hashes of the tokens, their names and dates; never a secret."""

from datetime import timedelta

import sqlalchemy as sa

from . import clock
from .engine import reading
from .tables import db, tokens

# How stale last_used_at may get before a request refreshes it. Writing it on every
# authenticated request would turn each read into a write on a contended row.
LAST_USED_GRANULARITY = timedelta(minutes=1)

# Built once: every authenticated request runs it, and building the expression each time cost
# more than executing it.
FIND_TOKEN = sa.select(tokens.c.id, tokens.c.name, tokens.c.last_used_at).where(
    tokens.c.token_hash == sa.bindparam("token_hash"), tokens.c.revoked_at.is_(None)
)


class DuplicateName(Exception):
    """A token with this name already exists."""


class UnknownName(Exception):
    """No token has this name."""


def create_token(name, token_hash):
    """Store a new token's hash under a unique name."""
    try:
        with db.engine.begin() as conn:
            conn.execute(
                tokens.insert().values(name=name, token_hash=token_hash, created_at=clock.utcnow())
            )
    except sa.exc.IntegrityError as e:
        raise DuplicateName(name) from e


def find_token(token_hash):
    """The name of the live token with this hash, or None; revocation shows at once."""
    with reading() as conn:
        row = conn.execute(FIND_TOKEN, {"token_hash": token_hash}).first()
        if row is None:
            return None
        now = clock.utcnow()
        if row.last_used_at is None or row.last_used_at < now - LAST_USED_GRANULARITY:
            conn.execute(tokens.update().where(tokens.c.id == row.id).values(last_used_at=now))
            conn.commit()
    return row.name


def list_tokens():
    """Every token's name and dates, oldest first; the hashes stay in the database."""
    with db.engine.connect() as conn:
        return conn.execute(
            sa.select(
                tokens.c.name, tokens.c.created_at, tokens.c.last_used_at, tokens.c.revoked_at
            ).order_by(tokens.c.created_at, tokens.c.id)
        ).all()


def revoke_token(name):
    """Mark a token revoked; return False when it already was."""
    with db.engine.begin() as conn:
        row = conn.execute(
            sa.select(tokens.c.id, tokens.c.revoked_at).where(tokens.c.name == name)
        ).first()
        if row is None:
            raise UnknownName(name)
        if row.revoked_at is not None:
            return False
        conn.execute(tokens.update().where(tokens.c.id == row.id).values(revoked_at=clock.utcnow()))
    return True
