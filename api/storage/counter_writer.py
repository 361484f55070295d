"""The counter writer: every hit's increment, committed before the request is answered.

Concurrent increments in one process share one transaction (``group_commit.py``), which one
of two writers commits: ``sqlite_writer.py`` (turns on a lock file, then the hour's and the
total's rows per counter) or ``postgresql_writer.py`` (the whole batch in one statement);
``writer.py`` holds what they share.
"""

import sqlalchemy as sa
from flask import current_app

from .postgresql_writer import PostgreSQLWriter
from .sqlite_writer import SQLiteWriter


def increment_counter(name, amount=1):
    """Increment in SQL so that concurrent workers never lose a count; return the new total.

    Concurrent increments in one process share one transaction (see group_commit.py); each
    still returns only once its own increment is committed, with the total its transaction
    saw, itself included (unique within a process; see INCREMENT_BATCH). On PostgreSQL it
    raises within DB_STATEMENT_TIMEOUT_MS plus a second of being called when the database does
    not answer (deadlines.py), having counted nothing.
    """
    return current_app.extensions["counter_commits"].increment(name, amount)


def increment_counters(amounts, touched=(), reads=()):
    """Increment several counters in one transaction (``{name: amount}``), writing the last
    use of the tokens ``touched`` (their ids) in it; return each total, and those of the
    counters ``reads``, which it reads without adding to them. A request counted as a hit, an
    error and a token's use together costs one write, and one reporting the error count no
    second round trip."""
    return current_app.extensions["counter_commits"].increment_many(amounts, touched, reads)


def database_writable():
    """Whether a hit could be committed now: a batch that adds nothing, through the same writer
    and transaction every counted request uses, so that a health check fails exactly when
    counting would (a database unreachable, read-only, locked by another process, or out of
    disk), not only when it cannot answer a SELECT."""
    try:
        increment_counter("hits", 0)
    except sa.exc.DBAPIError:
        return False
    return True


def writer_for(engine, config):
    """The writer for this engine's database, sized and bounded by the app's config."""
    writer = PostgreSQLWriter if engine.dialect.name == "postgresql" else SQLiteWriter
    return writer(engine, config)
