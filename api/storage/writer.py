"""What the SQLite and PostgreSQL counter writers share: the connection each process keeps for
its batches, the hour a batch is stamped with, the daily pruning it starts, and failing
cleanly.

Concurrent increments in one process are batched by ``group_commit.py``; a writer commits
one batch, ``{name: amount}``, in one transaction and returns each counter's total after it.
Each process keeps one connection of its own for this, and runs SQL compiled once for the
driver on the DBAPI connection (``api/speedups/dbapi.py``): this is the hot path of every
request, and a batch then costs one transaction and no per-statement work in SQLAlchemy.
Driver errors come out wrapped as SQLAlchemy's, so that errors.py answers them like any other
database error.

Both writers stamp a batch with its hour by the database's clock (``clock.py``) just before
its statements, and neither lets it land in an hour that readers may already take as final
(``WRITE_DEADLINE``).
"""

import os
import random
from datetime import datetime, time, timedelta

import sqlalchemy as sa

from ..speedups.dbapi import wrapped
from . import clock, retention
from .engine import server_unavailable

# The longest a batch may take from reading its hour to its commit. Readers take an hour as
# final SEALED_AFTER past its end (series.py), so its increments must all be in by then. On
# PostgreSQL a statement that reaches the server this long after its stamp writes nothing
# (INCREMENT_BATCH), and one that reaches it in time is cut this long after it began (a
# shorter DB_STATEMENT_TIMEOUT_MS stands): every write of an hour commits within twice this
# after the hour ends, by the database's clock. A SQLite batch that waited into the next hour
# is stamped again before it commits.
WRITE_DEADLINE = timedelta(seconds=10)


class Writer:
    """What both writers share: the connection kept for the process, and failing cleanly."""

    def __init__(self, engine, config):
        self.engine = engine
        self.slots = config["COUNTER_SLOTS"]
        self.keep_days = config["COUNTER_HOURS_RETENTION_DAYS"]
        self._connection = self._pid = None
        # Told the token version each batch reads, and when its statement was sent
        # (token_cache.TokenCache.observe); storage.init_app sets it.
        self.on_version = None
        # The first batch of each process prunes old hourly rows, then the first of each day.
        self._prune_at = datetime.min if self.keep_days else datetime.max
        sa.event.listen(engine, "engine_disposed", self.close)

    def __call__(self, amounts, asked, touched=(), reads=()):
        """Add every amount in one transaction, writing the last use of the tokens
        ``touched`` and reading the totals of the counters ``reads``; return each counter's
        total after it. ``asked`` is when the batch's first caller asked
        (``time.monotonic()``)."""
        params = {"slot": random.randrange(self.slots)}  # noqa: S311
        try:
            self._begin(asked)
            if self._connection is None or self._pid != os.getpid() or not self._usable():
                self._connect()
            now = clock.utcnow()
            params["hour"] = self.stamp(clock.hour_of(now))
            if now >= self._prune_at:
                self._prune(now)
            params["touched"], params["now"], params["reads"] = sorted(touched), now, list(reads)
            return self._commit(amounts, params)
        except Exception as e:
            raise self._failed(e, params) from e

    def _begin(self, asked):
        """Before anything else of a batch."""

    def stamp(self, hour):
        """The hour as the driver is given it."""
        return hour

    def _prune(self, now):
        """Start pruning on a thread of its own, and set the next day's time: a random
        moment in its first hour, so that the dynos of one database do not all start at once."""
        jitter = timedelta(seconds=random.randrange(3600))  # noqa: S311
        self._prune_at = datetime.combine(now.date() + timedelta(days=1), time.min) + jitter
        retention.prune_in_background(self.engine, self.keep_days)

    def _usable(self):
        return True

    def _connect(self):
        """Open this process's connection; a forked worker never reuses its parent's."""
        self._pid = os.getpid()
        self._connection = None
        self._connection = self.engine.raw_connection()
        self._dbapi_connection = self._connection.dbapi_connection
        self._cursor = self._dbapi_connection.cursor()

    def _failed(self, error, params):
        """Roll back, drop a broken connection, and wrap a driver error the way SQLAlchemy does."""
        connection, dialect = self._connection, self.engine.dialect
        driver_error = isinstance(error, dialect.loaded_dbapi.Error)
        disconnect = driver_error and (
            connection is None
            or dialect.is_disconnect(error, connection, None)
            or server_unavailable(error)
        )
        if connection is not None:
            try:
                connection.rollback()
            except Exception:
                disconnect = True
            if disconnect:
                self.close()
        if not driver_error:
            return error
        return wrapped(error, params, dialect, disconnect)

    def close(self, *_args):
        """Close the connection for good, as ``engine.dispose()`` does with the pool's."""
        if self._connection is not None and self._pid == os.getpid():
            self._connection.invalidate()
        self._connection = None
