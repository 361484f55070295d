"""The SQLite counter writer: each counter's hour and total bumped in one transaction, the
writers of this machine's processes taking turns on a lock file.

The write lock is held from the first statement to the commit, so the total is exact and no
two requests get the same number. A batch that waited into the next hour is stamped again
before it commits.
"""

import fcntl
import os

import sqlalchemy as sa

from ..speedups.dbapi import compiled
from . import clock
from .counter_reads import TOTAL_SQL
from .writer import Writer

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

# A counter's total, read in a batch's transaction for a request that reports it.
READ_TOTAL = sa.text(TOTAL_SQL)

# Read in every batch's transaction, for the tokens this process keeps (token_cache.py).
VERSION_OF_TOKENS_SQL = "SELECT version FROM token_version WHERE id = 1"


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
        self._read_total, self._read_arguments = compiled(READ_TOTAL, engine.dialect)
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
                sent = clock.seconds()
                totals = {}
                for name, amount in amounts.items():
                    params["name"], params["amount"] = name, amount
                    for statement, arguments in self._statements:
                        cursor.execute(statement, arguments(params))
                    totals[name] = cursor.fetchone()[0]
                for name in params["reads"]:
                    params["name"] = name
                    cursor.execute(self._read_total, self._read_arguments(params))
                    totals[name] = cursor.fetchone()[0]
                if params["touched"]:
                    self._touch(cursor, params)
                version = cursor.execute(VERSION_OF_TOKENS_SQL).fetchone()[0]
                hour = self.stamp(clock.current_hour())
                if hour == params["hour"]:
                    self._dbapi_connection.commit()
                    if self.on_version is not None:
                        self.on_version(version, sent)
                    return totals
                # The turn or SQLite's lock took the batch into another hour, which readers
                # may already hold as final: stamp it with the hour it commits in.
                self._dbapi_connection.rollback()
                params["hour"] = hour
        finally:
            if turns is not None:
                fcntl.flock(turns, fcntl.LOCK_UN)

    def _touch(self, cursor, params):
        """The last use of the tokens this batch's requests sent, in the same transaction."""
        ids = params["touched"]
        marks = ", ".join("?" * len(ids))
        cursor.execute(
            f"UPDATE tokens SET last_used_at = ? WHERE id IN ({marks})",  # noqa: S608 - ?s only
            (str(params["now"].replace(microsecond=0)), *ids),
        )

    def close(self, *_args):
        if self._turns_fd is not None and self._pid == os.getpid():
            os.close(self._turns_fd)
        self._turns_fd = None
        super().close()
