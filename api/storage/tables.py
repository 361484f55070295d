"""The tables, as SQLAlchemy sees them; migrations/ creates them, and a test keeps both equal."""

import sqlalchemy as sa
from flask_sqlalchemy import SQLAlchemy

db = SQLAlchemy()

# A counter is the sum of its slots. Each increment lands on one slot, so concurrent writers
# on PostgreSQL spread over several rows instead of queueing on one row lock.
counters = db.Table(
    "counters",
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("slot", sa.SmallInteger, primary_key=True, server_default="0"),
    sa.Column("value", sa.BigInteger, nullable=False, server_default="0"),
)

# The same increments bucketed by UTC hour, for traffic over time. Slotted for the same reason.
counter_hours = db.Table(
    "counter_hours",
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("hour", sa.DateTime, primary_key=True),
    sa.Column("slot", sa.SmallInteger, primary_key=True, server_default="0"),
    sa.Column("value", sa.BigInteger, nullable=False, server_default="0"),
)

tokens = db.Table(
    "tokens",
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    # SHA-256 of the secret, hex. Unique, so it is indexed and a lookup is one probe.
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("last_used_at", sa.DateTime),
    sa.Column("revoked_at", sa.DateTime),
    # NULL: never expires.
    sa.Column("expires_at", sa.DateTime),
    # Space-separated scope names; NULL: every scope, as tokens from before scopes have.
    sa.Column("scopes", sa.String(200)),
    # A limit in Flask-Limiter's notation; NULL: RATELIMIT_PER_TOKEN.
    sa.Column("rate_limit", sa.String(100)),
    # The secret before the last roll, and when it stops working; NULL: none works.
    sa.Column("previous_hash", sa.String(64)),
    sa.Column("previous_expires_at", sa.DateTime),
    sa.Index("ix_tokens_previous_hash", "previous_hash", unique=True),
)

# One row, whose version every change of a token bumps (create, revoke, roll): each process
# keeps the tokens it has checked, and drops them all when it sees the version move
# (token_cache.py).
token_version = db.Table(
    "token_version",
    sa.Column("id", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("version", sa.BigInteger, nullable=False, server_default="0"),
)

# Slots are numbered in a SMALLINT column.
MAX_COUNTER_SLOTS = 32767
