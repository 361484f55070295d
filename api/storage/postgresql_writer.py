"""The PostgreSQL counter writer: a whole batch in one autocommit statement, one round trip,
watched by the request path's deadline and refused by the server once it is too late.
"""

from time import monotonic

import sqlalchemy as sa

from ..speedups.dbapi import compiled
from ..speedups.pool import closed_by_server
from . import clock, deadlines
from .writer import WRITE_DEADLINE, Writer

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
#
# Its rows are written in the order of :names, the totals' rows then the hours', and the
# writer sorts the names, so that every batch of every process locks rows in one order.
#
# The same statement writes the last use of the tokens :touched (when the batch is not empty),
# reads the totals of the counters :reads (those the batch's requests report without adding
# to them, as the same snapshot sees them), and reads the token version, for the tokens this
# process keeps (token_cache.py).
INCREMENT_BATCH = sa.text(
    "WITH batch AS MATERIALIZED (SELECT * FROM unnest(CAST(:names AS VARCHAR[]), "
    "CAST(:amounts AS BIGINT[])) AS b(name, amount) "
    "WHERE (SELECT clock_timestamp()) <= to_timestamp(CAST(:deadline AS DOUBLE PRECISION))), "
    "total AS (INSERT INTO counters (name, slot, value) SELECT name, :slot, amount FROM batch "
    "ON CONFLICT (name, slot) DO UPDATE SET value = counters.value + excluded.value), "
    "hour AS (INSERT INTO counter_hours (name, hour, slot, value) "
    "SELECT name, :hour, :slot, amount FROM batch "
    "ON CONFLICT (name, hour, slot) DO UPDATE SET value = counter_hours.value + excluded.value), "
    "touched AS (UPDATE tokens SET last_used_at = :now "
    "WHERE id = ANY(CAST(:touched AS INTEGER[])) AND EXISTS (SELECT 1 FROM batch)), "
    "wanted AS (SELECT name, amount FROM batch UNION ALL "
    "SELECT name, 0 FROM unnest(CAST(:reads AS VARCHAR[])) AS r(name) "
    "WHERE EXISTS (SELECT 1 FROM batch)) "
    "SELECT wanted.name, CAST(COALESCE(SUM(counters.value), 0) AS BIGINT) + wanted.amount, "
    "(SELECT version FROM token_version WHERE id = 1) "
    "FROM wanted LEFT JOIN counters ON counters.name = wanted.name "
    "GROUP BY wanted.name, wanted.amount"
)


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
        # In one order in every process: a batch locks each counter's rows as it goes, and two
        # batches that took the same rows in opposite orders would deadlock.
        names = sorted(amounts)
        params["names"], params["amounts"] = names, [amounts[name] for name in names]
        self._watch()
        try:
            if clock.due():
                clock.measure(self._dbapi_connection)
            # Real time on the database's clock, never the clock tests move.
            left = WRITE_DEADLINE.total_seconds()
            if self._due is not None:
                left = min(left, self._due - monotonic())
            sent = clock.seconds()
            params["deadline"] = sent + left
            self._cursor.execute(self._statement, self._arguments(params))
            rows = self._cursor.fetchall()
        finally:
            self._unwatch()
        if len(rows) != len(amounts) + len(params["reads"]):
            raise self._late()
        if self.on_version is not None:
            self.on_version(rows[0][2], sent)
        return {name: total for name, total, _version in rows}
