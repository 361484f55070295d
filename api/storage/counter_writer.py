"""The counter writer: every hit's increment, committed before the request is answered.

Concurrent increments in one process are batched by ``group_commit.py``; a writer commits
one batch, ``{name: amount}``, in one transaction and returns each counter's total after it.
Each process keeps one connection of its own for this, and runs SQL compiled once for the
driver on the DBAPI connection: this is the hot path of every request, and a batch then costs
one transaction and no per-statement work in SQLAlchemy. Driver errors come out wrapped as
SQLAlchemy's, so that errors.py answers them like any other database error.

The two databases take two paths:

- **SQLite** (:class:`SQLiteWriter`): the writers of this machine's processes take turns on a
  lock file, then per counter bump the hour's row and the total's row, the total's upsert
  returning the new sum, and commit. The write lock is held from the first statement to the
  commit, so the total is exact and no two requests get the same number.
- **PostgreSQL** (:class:`PostgreSQLWriter`): the whole batch is one statement in autocommit
  mode, one round trip. See ``INCREMENT_BATCH`` for what the total it reports means.

Both stamp a batch with its hour by the database's clock (``clock.py``) just before its
statements, and neither lets it land in an hour that readers may already take as final
(``WRITE_DEADLINE``); both start the daily pruning of old hours (``retention.py``). The
module is a little over the usual length because it is one concern, the hot path's write,
and its two halves read best side by side.
"""

import fcntl
import os
import random
from datetime import datetime, time, timedelta
from time import monotonic

import sqlalchemy as sa
from flask import current_app

from ..speedups.dbapi import compiled, wrapped
from ..speedups.pool import closed_by_server
from . import clock, deadlines, retention
from .counter_reads import TOTAL_SQL
from .engine import server_unavailable

# The longest a batch may take from reading its hour to its commit. Readers take an hour as
# final SEALED_AFTER past its end (series.py), so its increments must all be in by then. On
# PostgreSQL a statement that reaches the server this long after its stamp writes nothing
# (INCREMENT_BATCH), and one that reaches it in time is cut this long after it began (a
# shorter DB_STATEMENT_TIMEOUT_MS stands): every write of an hour commits within twice this
# after the hour ends, by the database's clock. A SQLite batch that waited into the next hour
# is stamped again before it commits.
WRITE_DEADLINE = timedelta(seconds=10)

# One counter's total row, bumped; and the same for its hour's row.
BUMP_TOTAL_SQL = (
    "INSERT INTO counters (name, slot, value) VALUES (:name, :slot, :amount) "
    "ON CONFLICT (name, slot) DO UPDATE SET value = counters.value + excluded.value"
)
BUMP_HOUR = sa.text(
    "INSERT INTO counter_hours (name, hour, slot, value) VALUES (:name, :hour, :slot, :amount) "
    "ON CONFLICT (name, hour, slot) DO UPDATE SET value = counter_hours.value + excluded.value"
)
# SQLite returns the total from the upsert itself: a subquery in RETURNING sees the row just
# written.
BUMP_TOTAL_RETURNING_SUM = sa.text(f"{BUMP_TOTAL_SQL} RETURNING ({TOTAL_SQL})")

# PostgreSQL adds a whole batch in one statement. The final SELECT sees the snapshot from
# before the writes in its CTEs, hence the added amounts. So the total a batch reports holds
# every hit committed before its statement began plus its own; two workers whose statements
# overlap on different slots may report the same number. Taking the total from one
# serialised row would make the numbers unique and bring back the hot row the slots are there
# to avoid. The stored total is exact either way.
#
# The batch is empty when the server starts it after :deadline (seconds since the epoch on
# its own clock): one reading of the clock for the whole batch, and a materialised CTE, so
# that both inserts see the same rows, all or none. A batch that reached the server late,
# after a stall on the network or in a pooler, then writes nothing and returns no rows, rather
# than landing in an hour readers may hold as final, or counting a hit whose caller was
# already answered 503.
INCREMENT_BATCH = sa.text(
    "WITH batch AS MATERIALIZED (SELECT * FROM unnest(CAST(:names AS VARCHAR[]), "
    "CAST(:amounts AS BIGINT[])) AS b(name, amount) "
    "WHERE (SELECT clock_timestamp()) <= to_timestamp(CAST(:deadline AS DOUBLE PRECISION))), "
    "total AS (INSERT INTO counters (name, slot, value) SELECT name, :slot, amount FROM batch "
    "ON CONFLICT (name, slot) DO UPDATE SET value = counters.value + excluded.value), "
    "hour AS (INSERT INTO counter_hours (name, hour, slot, value) "
    "SELECT name, :hour, :slot, amount FROM batch "
    "ON CONFLICT (name, hour, slot) DO UPDATE SET value = counter_hours.value + excluded.value) "
    "SELECT batch.name, CAST(COALESCE(SUM(counters.value), 0) AS BIGINT) + batch.amount "
    "FROM batch LEFT JOIN counters ON counters.name = batch.name "
    "GROUP BY batch.name, batch.amount"
)


def increment_counter(name, amount=1):
    """Increment in SQL so that concurrent workers never lose a count; return the new total.

    Concurrent increments in one process share one transaction (see group_commit.py); each
    still returns only once its own increment is committed, with the total its transaction
    saw, itself included (unique within a process; see INCREMENT_BATCH). On PostgreSQL it
    raises within DB_STATEMENT_TIMEOUT_MS plus a second of being called when the database does
    not answer (deadlines.py), having counted nothing.
    """
    return current_app.extensions["counter_commits"].increment(name, amount)


def increment_counters(amounts):
    """Increment several counters in one transaction (``{name: amount}``); return each total.
    A request counted as a hit and an error together costs one write, not two."""
    return current_app.extensions["counter_commits"].increment_many(amounts)


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


class Writer:
    """What both writers share: the connection kept for the process, and failing cleanly."""

    def __init__(self, engine, config):
        self.engine = engine
        self.slots = config["COUNTER_SLOTS"]
        self.keep_days = config["COUNTER_HOURS_RETENTION_DAYS"]
        self._connection = self._pid = None
        # The first batch of each process prunes old hourly rows, then the first of each day.
        self._prune_at = datetime.min if self.keep_days else datetime.max
        sa.event.listen(engine, "engine_disposed", self.close)

    def __call__(self, amounts, asked):
        """Add every amount in one transaction; return each counter's total after it.
        ``asked`` is when the batch's first caller asked (``time.monotonic()``)."""
        params = {"slot": random.randrange(self.slots)}  # noqa: S311
        try:
            self._begin(asked)
            if self._connection is None or self._pid != os.getpid() or not self._usable():
                self._connect()
            now = clock.utcnow()
            params["hour"] = self.stamp(clock.hour_of(now))
            if now >= self._prune_at:
                self._prune(now)
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


class SQLiteWriter(Writer):
    """Bumps each counter's hour and total, then commits, taking turns on a lock file."""

    def stamp(self, hour):
        """The hour as text, as ``sqlite3``'s default datetime adapter has always written it
        here (``2026-03-10 14:00:00``), so that the rows of one hour stay one row per slot;
        that adapter is deprecated from Python 3.12."""
        return str(hour)

    def __init__(self, engine, config):
        super().__init__(engine, config)
        self._statements = [
            compiled(s, engine.dialect) for s in (BUMP_HOUR, BUMP_TOTAL_RETURNING_SUM)
        ]
        # Writers of this machine's processes take turns on a lock file before they take
        # SQLite's write lock: the kernel wakes the next one the moment it is free, where
        # SQLite's busy handler would sleep in whole milliseconds.
        self._turns = None
        self._turns_fd = None
        if engine.url.database not in (None, "", ":memory:"):
            self._turns = engine.url.database + "-counters.lock"

    def _connect(self):
        self._turns_fd = None
        super()._connect()
        if self._turns is not None:
            self._turns_fd = os.open(self._turns, os.O_RDWR | os.O_CREAT, 0o600)

    def _commit(self, amounts, params):
        cursor, turns = self._cursor, self._turns_fd
        if turns is not None:
            fcntl.flock(turns, fcntl.LOCK_EX)
        try:
            while True:
                totals = {}
                for name, amount in amounts.items():
                    params["name"], params["amount"] = name, amount
                    for statement, arguments in self._statements:
                        cursor.execute(statement, arguments(params))
                    totals[name] = cursor.fetchone()[0]
                hour = self.stamp(clock.current_hour())
                if hour == params["hour"]:
                    self._dbapi_connection.commit()
                    return totals
                # The turn or SQLite's lock took the batch into another hour, which readers
                # may already hold as final: stamp it with the hour it commits in.
                self._dbapi_connection.rollback()
                params["hour"] = hour
        finally:
            if turns is not None:
                fcntl.flock(turns, fcntl.LOCK_UN)

    def close(self, *_args):
        if self._turns_fd is not None and self._pid == os.getpid():
            os.close(self._turns_fd)
        self._turns_fd = None
        super().close()


class PostgreSQLWriter(Writer):
    """Adds the whole batch in one autocommit statement: one transaction, one round trip.

    A batch is watched from when its first caller asked (deadlines.py): the callers queued
    behind a batch the database never answers are answered 503 with it, not one deadline
    later each. The statement itself carries the deadline that matters to readers as well
    (INCREMENT_BATCH): whichever comes first of its stamp plus WRITE_DEADLINE and the moment
    its callers stop waiting.
    """

    def __init__(self, engine, config):
        super().__init__(engine, config)
        self._statement, self._arguments = compiled(INCREMENT_BATCH, engine.dialect)
        deadline = int(WRITE_DEADLINE.total_seconds() * 1000)
        configured = config["DB_STATEMENT_TIMEOUT_MS"]
        self._timeout_ms = min(configured, deadline) if configured else deadline
        # DB_STATEMENT_TIMEOUT_MS=0 asks for no limit: then nothing is watched.
        self._patience = deadlines.patience(self._timeout_ms) if configured else None
        self._due = None
        self._sock = None

    def _begin(self, asked):
        """Set the batch's deadline; a batch whose callers have waited it out already, behind
        one the database did not answer, fails without a round trip."""
        if self._patience is None:
            return
        self._due = asked + self._patience
        if self._due <= monotonic():
            raise self._late()

    def _late(self):
        """The error of a batch that missed its deadline: errors.py answers it with a 503."""
        return self.engine.dialect.loaded_dbapi.OperationalError(
            "the counter batch did not reach the database before its deadline; nothing was counted"
        )

    def _watch(self):
        if self._due is not None and self._sock is not None:
            deadlines.watch(self._sock, self._due)

    def _unwatch(self):
        if self._due is not None and self._sock is not None:
            deadlines.unwatch(self._sock)

    def _usable(self):
        """Whether the server has sent nothing unasked; a connection it closed reads as EOF.

        The pool tests each connection as it is checked out; this one is kept, so it is
        checked the same way before each batch, and replaced when the server or the network
        dropped it between batches.
        """
        if closed_by_server(self._dbapi_connection):
            self.close()
            return False
        return True

    def _connect(self):
        super()._connect()
        self._sock = deadlines.socket_of(self._dbapi_connection)
        self._watch()
        try:
            self._dbapi_connection.autocommit = True
            self._cursor.execute(f"SET statement_timeout = {int(self._timeout_ms)}")
        finally:
            self._unwatch()

    def _commit(self, amounts, params):
        params["names"], params["amounts"] = list(amounts), list(amounts.values())
        self._watch()
        try:
            if clock.due():
                clock.measure(self._dbapi_connection)
            # Real time on the database's clock, never the clock tests move.
            left = WRITE_DEADLINE.total_seconds()
            if self._due is not None:
                left = min(left, self._due - monotonic())
            params["deadline"] = clock.seconds() + left
            self._cursor.execute(self._statement, self._arguments(params))
            totals = dict(self._cursor.fetchall())
        finally:
            self._unwatch()
        if len(totals) != len(amounts):
            raise self._late()
        return totals
