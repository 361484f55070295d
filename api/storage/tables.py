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
)

# Slots are numbered in a SMALLINT column.
MAX_COUNTER_SLOTS = 32767
