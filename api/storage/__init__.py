"""The database: its tables and every SQL statement the service runs.

Resources, pages, auth and the CLI call the functions this package's face names and never
build SQL themselves, so that each query can be read, tuned and tested in one place:

- ``tables.py``: the tables (the migrations create them);
- ``engine.py``: the engine, what each connection is told, the migration lock;
- ``deadlines.py``: the watchdog that cuts a request's use of a connection the server no
  longer answers;
- ``counter_writer.py``: every hit's increment, and the health check, which commits a batch
  that adds nothing; the writers behind it, ``writer.py`` (what both share),
  ``sqlite_writer.py`` and ``postgresql_writer.py``;
- ``counter_reads.py``: totals, and the per-hour and per-day series from every stored row;
- ``series.py``: the same series with completed hours read once per process, for the pages;
- ``retention.py``: how long hourly rows are kept, and their daily pruning;
- ``token_store.py``: token hashes, names, dates, scopes and limits; ``token_cache.py``: the
  tokens each process keeps, dropped when any token changes;
- ``clock.py``: the one clock stored times come from, the database's (tests move
  ``storage.clock.utcnow``).
"""

from flask import current_app

from . import clock, group_commit
from .counter_reads import counts_per_day, counts_per_hour, read_counter
from .counter_writer import database_writable, increment_counter, increment_counters, writer_for
from .engine import MIGRATION_LOCK_KEY, migration_lock, reading
from .engine import bind as _bind
from .retention import prune_counter_hours
from .series import SEALED_AFTER, SeriesCache
from .tables import MAX_COUNTER_SLOTS, counter_hours, counters, db, tokens
from .token_cache import TokenCache
from .token_store import (
    DuplicateName,
    NotLive,
    Token,
    UnknownName,
    create_token,
    list_tokens,
    revoke_token,
    roll_token,
    token_usage,
    usage_counter,
)

__all__ = [
    "MAX_COUNTER_SLOTS",
    "MIGRATION_LOCK_KEY",
    "SEALED_AFTER",
    "SeriesCache",
    "DuplicateName",
    "NotLive",
    "Token",
    "UnknownName",
    "clock",
    "counter_hours",
    "counters",
    "counts_per_day",
    "counts_per_hour",
    "create_token",
    "database_writable",
    "db",
    "find_token",
    "increment_counter",
    "increment_counters",
    "init_app",
    "list_tokens",
    "migration_lock",
    "prune_counter_hours",
    "read_counter",
    "reading",
    "revoke_token",
    "roll_token",
    "token_usage",
    "usage_counter",
    "tokens",
]


def init_app(app):
    """Bind the database to the app, and give each process a counter writer that batches
    concurrent increments into shared transactions (group_commit.py)."""
    engine = _bind(app)
    writer = writer_for(engine, app.config)
    cache = app.extensions["token_cache"] = TokenCache()
    writer.on_version = cache.observe
    app.extensions["counter_commits"] = group_commit.GroupCommit(writer)


def find_token(token_hash):
    """The token this hash is a current or previous secret of, or None: from this process's
    kept tokens while they are known to be current (token_cache.py), else the database."""
    return current_app.extensions["token_cache"].find(token_hash)
