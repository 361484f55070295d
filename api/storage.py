"""The database: its tables and every SQL statement the service runs.

Resources, pages, auth and the CLI call the named functions below and never build SQL
themselves, so that each query can be read, tuned and tested in one place.
"""

import fcntl
import operator
import os
import random
import select
import sys
from contextlib import contextmanager
from datetime import UTC, datetime, time, timedelta

import sqlalchemy as sa
from flask import current_app
from flask_sqlalchemy import SQLAlchemy

from . import group_commit

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

# How stale last_used_at may get before a request refreshes it. Writing it on every
# authenticated request would turn each read into a write on a contended row.
LAST_USED_GRANULARITY = timedelta(minutes=1)

_BUMP_TOTAL = (
    "INSERT INTO counters (name, slot, value) VALUES (:name, :slot, :amount) "
    "ON CONFLICT (name, slot) DO UPDATE SET value = counters.value + excluded.value"
)
_BUMP_HOUR = (
    "INSERT INTO counter_hours (name, hour, slot, value) VALUES (:name, :hour, :slot, :amount) "
    "ON CONFLICT (name, hour, slot) DO UPDATE SET value = counter_hours.value + excluded.value"
)
# The cast keeps the total an integer: PostgreSQL sums a BIGINT column as NUMERIC.
_SUM = "SELECT CAST(COALESCE(SUM(value), 0) AS BIGINT) FROM counters WHERE name = :name"

# PostgreSQL adds a whole batch in one statement, committed on its own, so that a batch is one
# round trip. The final SELECT sees the snapshot from before the writes in its CTEs, hence the
# added amounts. So the total a batch reports holds every hit committed before its statement
# began plus its own; two workers whose statements overlap on different slots may report the
# same number. Taking the total from one serialised row would make the numbers unique and
# bring back the hot row the slots are there to avoid. The stored total is exact either way.
_INCREMENT_BATCH_ONE_TRIP = sa.text(
    "WITH batch AS (SELECT * FROM unnest(CAST(:names AS VARCHAR[]), CAST(:amounts AS BIGINT[])) "
    "AS b(name, amount)), "
    "total AS (INSERT INTO counters (name, slot, value) SELECT name, :slot, amount FROM batch "
    "ON CONFLICT (name, slot) DO UPDATE SET value = counters.value + excluded.value), "
    "hour AS (INSERT INTO counter_hours (name, hour, slot, value) "
    "SELECT name, :hour, :slot, amount FROM batch "
    "ON CONFLICT (name, hour, slot) DO UPDATE SET value = counter_hours.value + excluded.value) "
    "SELECT batch.name, CAST(COALESCE(SUM(counters.value), 0) AS BIGINT) + batch.amount "
    "FROM batch LEFT JOIN counters ON counters.name = batch.name "
    "GROUP BY batch.name, batch.amount"
)
# SQLite takes the hour first, then gets the total back from the upsert itself: a subquery in
# RETURNING sees the row just written. The write lock is held from the first statement to
# the commit, so the total is exact.
_BUMP_TOTAL_RETURNING_SUM = sa.text(f"{_BUMP_TOTAL} RETURNING ({_SUM})")
_BUMP_TOTAL, _BUMP_HOUR, _SUM = sa.text(_BUMP_TOTAL), sa.text(_BUMP_HOUR), sa.text(_SUM)


class DuplicateName(Exception):
    """A token with this name already exists."""


class UnknownName(Exception):
    """No token has this name."""


class StartupRefused(SystemExit):
    """The service cannot run as configured: the process prints one line and exits.

    A SystemExit, so that the message is the process's only output whether the web process
    (``api/server.py``, before it listens) or the release phase's ``flask db upgrade`` was
    building the app; the flask CLI would print a traceback around any other exception. Its
    status, 3, is what a process manager reads as "failed to boot", not worth a restart.
    """

    STATUS = 3

    def __init__(self, message):
        super().__init__(self.STATUS)
        self.message = message
        print(message, file=sys.stderr, flush=True)

    def __str__(self):
        return self.message


class EphemeralDatabase(StartupRefused):
    """SQLite on a disk that the platform wipes."""


class InvalidSetting(StartupRefused):
    """A setting the service cannot run with."""


# Slots are numbered in a SMALLINT column.
MAX_COUNTER_SLOTS = 32767

# SQLSTATEs that mean this server cannot do the work now, though the connection still answers:
# a primary turned read-only standby by a failover (25006), or a server shutting down or
# starting up. The connection is dropped like a broken one, and the request answers 503.
UNAVAILABLE_SQLSTATES = frozenset({"25006", "57P01", "57P02", "57P03"})


def server_unavailable(error):
    """Whether a driver error says the database cannot serve now, rather than that we erred."""
    return getattr(error, "sqlstate", None) in UNAVAILABLE_SQLSTATES


EPHEMERAL_SQLITE_MESSAGE = (
    "Refusing to start: DYNO is set, so this disk is wiped at every restart and not shared "
    "between dynos, and SQLite on it would lose every count; set DATABASE_URL to the "
    "platform's PostgreSQL, or ALLOW_EPHEMERAL_SQLITE=true to run anyway."
)

# Any constant works, as long as every release of this app uses the same one.
MIGRATION_LOCK_KEY = 0x61706930_6D696772


def engine_options(config, url):
    """Pool settings for a server database; SQLite keeps SQLAlchemy's, as its file needs none."""
    if url.get_backend_name() == "sqlite":
        return {}
    options = {
        # One connection per request thread, so that no request waits for another's, and one
        # more that the counter writer keeps for itself (CounterWriter).
        "pool_size": (config["DB_POOL_SIZE"] or config["WEB_THREADS"]) + 1,
        "max_overflow": config["DB_MAX_OVERFLOW"],
        # A request that cannot get a connection answers 503 before a router's 30 s run out.
        "pool_timeout": 10,
        # No pool_pre_ping: its round trip per checkout cost more than the query on the token
        # check. init_app tests each connection without one (drop_closed_connections).
    }
    if url.get_backend_name() == "postgresql":
        options["connect_args"] = {
            "connect_timeout": config["DB_CONNECT_TIMEOUT"],
            # A server that stops acknowledging what was sent drops the connection after the
            # statement timeout, and idle connections are probed, so that a dead peer or a
            # half-open network path fails a request instead of hanging it.
            "tcp_user_timeout": config["DB_STATEMENT_TIMEOUT_MS"],
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 5,
            "keepalives_count": 3,
        }
    return options


def require(config, name, valid, rule):
    """Refuse to start, naming the setting and its rule, when config[name] breaks it."""
    value = config[name]
    if not valid(value):
        raise InvalidSetting(f"Refusing to start: {name} is {value}; it must be {rule}.")


def init_app(app):
    """Bind the engine to the app: a pool sized to the web threads for PostgreSQL, and for SQLite
    the settings concurrent workers need, refused where the platform's disk is ephemeral."""
    url = sa.engine.make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    require(app.config, "DB_STATEMENT_TIMEOUT_MS", lambda ms: ms >= 0, "0 (no limit) or more")
    require(
        app.config,
        "COUNTER_SLOTS",
        lambda slots: 1 <= slots <= MAX_COUNTER_SLOTS,
        f"from 1 to {MAX_COUNTER_SLOTS}",
    )
    if url.get_backend_name() == "sqlite" and app.config["DYNO"]:
        if not app.config["ALLOW_EPHEMERAL_SQLITE"]:
            raise EphemeralDatabase(EPHEMERAL_SQLITE_MESSAGE)
        app.logger.warning("ALLOW_EPHEMERAL_SQLITE is set: counts will be lost at each restart")
    # Options the app was given explicitly win over the sized defaults.
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {
        **engine_options(app.config, url),
        **app.config.get("SQLALCHEMY_ENGINE_OPTIONS", {}),
    }
    db.init_app(app)
    with app.app_context():
        engine = db.engine
    if engine.dialect.name != "sqlite" and not engine.pool._pre_ping:
        sa.event.listen(engine, "checkout", drop_closed_connections)
    if engine.dialect.name == "postgresql":
        statement_timeout = int(app.config["DB_STATEMENT_TIMEOUT_MS"])

        @sa.event.listens_for(engine, "connect")
        def _postgresql_timeouts(dbapi_connection, _record):
            # Set once per connection rather than as a startup option, which connection
            # poolers such as PgBouncer refuse.
            autocommit = dbapi_connection.autocommit
            dbapi_connection.autocommit = True
            dbapi_connection.execute(f"SET statement_timeout = {statement_timeout}")
            dbapi_connection.autocommit = autocommit

        @sa.event.listens_for(engine, "handle_error")
        def _unavailable_is_a_disconnect(context):
            # SQLAlchemy then invalidates the connection (and the pool's older ones), and the
            # error handler answers 503: after a failover, new connections find the primary.
            if server_unavailable(context.original_exception):
                context.is_disconnect = True

    writer = CounterWriter(engine, app.config["COUNTER_SLOTS"])
    app.extensions["counter_commits"] = group_commit.GroupCommit(writer)
    if engine.dialect.name == "sqlite":
        busy_timeout = app.config["SQLITE_BUSY_TIMEOUT_MS"]

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            # WAL lets readers run beside the single writer; NORMAL sync in WAL mode keeps
            # every committed transaction across a process crash or SIGKILL.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout)}")
            cursor.close()


def closed_by_server(dbapi_connection):
    """Whether the server sent something unasked on an idle connection: after a restart, a
    failover or an idle timeout that is the end of the stream, which reads as EOF."""
    readable, _, _ = select.select([dbapi_connection.fileno()], [], [], 0)
    return bool(readable)


def drop_closed_connections(dbapi_connection, _record, _proxy):
    """Replace a pooled connection the server has closed before a request uses it.

    The pool's checkout hook: raising DisconnectionError makes SQLAlchemy discard the
    connection and hand out a fresh one. Unlike pool_pre_ping this needs no round trip. A
    network that drops packets without closing anything goes unseen here, as it would by a
    ping, until the query on it fails; that connection is then invalidated.
    """
    if closed_by_server(dbapi_connection):
        raise sa.exc.DisconnectionError("the database server closed this connection")


def reading():
    """A connection for reads, in autocommit mode on a server: no BEGIN before the query and
    no ROLLBACK when it goes back to the pool, two round trips saved. SQLite's driver begins
    no transaction for a SELECT anyway, and switching its mode costs more than it saves."""
    connection = db.engine.connect()
    if connection.dialect.name == "sqlite":
        return connection
    return connection.execution_options(isolation_level="AUTOCOMMIT")


@contextmanager
def migration_lock(connection):
    """Serialise concurrent releases on PostgreSQL, so that the second finds the schema at head.

    A session lock, taken and released outside the migration's own transaction, so that the
    waiting release reads the version table only after the first one has committed.
    """
    if connection.dialect.name != "postgresql":
        yield
        return
    # A migration may run, and a second release wait, far longer than a request may.
    connection.execute(sa.text("SET statement_timeout = 0"))
    key = {"key": MIGRATION_LOCK_KEY}
    connection.execute(sa.text("SELECT pg_advisory_lock(:key)"), key)
    connection.commit()
    try:
        yield
    finally:
        connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), key)
        connection.commit()


def utcnow():
    """Naive UTC, the one time format stored in every column on every backend."""
    return datetime.now(UTC).replace(tzinfo=None)


# A server that answers but cannot take writes (a standby after a failover) cannot count.
# A SQLite file this process can open is writable.
_WRITABLE = sa.text("SELECT current_setting('transaction_read_only') = 'off'")
_ANSWERS = sa.text("SELECT 1")


def database_reachable():
    """One round trip, so that a health check proves the database answers and takes writes."""
    try:
        with reading() as conn:
            check = _WRITABLE if conn.dialect.name == "postgresql" else _ANSWERS
            writable = bool(conn.execute(check).scalar_one())
            if not writable:
                # A session opened on a read-only server stays read-only: drop it, so that
                # the pool opens a new one, on the writable primary, once there is one.
                conn.invalidate()
            return writable
    except sa.exc.DBAPIError:
        return False


def current_hour():
    """The UTC hour an increment made now belongs to."""
    return utcnow().replace(minute=0, second=0, microsecond=0)


def increment_counter(name, amount=1):
    """Increment in SQL so that concurrent workers never lose a count; return the new total.

    Concurrent increments in one process share one transaction (see group_commit.py); each
    still returns only once its own increment is committed, with the total its transaction
    saw, itself included (unique within a process; see _INCREMENT_BATCH_ONE_TRIP).
    """
    return current_app.extensions["counter_commits"].increment(name, amount)


class CounterWriter:
    """Commits batches of increments on one connection of its own, kept for the process.

    This is the hot path of every request, so it runs SQL compiled once for the driver on the
    DBAPI connection: a batch costs one transaction and no per-statement work in SQLAlchemy.
    Driver errors come out wrapped as SQLAlchemy's, so that errors.py answers them like any
    other database error.
    """

    def __init__(self, engine, slots):
        self.engine = engine
        self.slots = slots
        self._connection = self._turns_fd = self._pid = None
        dialect = engine.dialect
        self._postgresql = dialect.name == "postgresql"
        statements = (
            (_INCREMENT_BATCH_ONE_TRIP,)
            if self._postgresql
            else (_BUMP_HOUR, _BUMP_TOTAL_RETURNING_SUM)
        )
        self._statements = [
            (compiled.string, _driver_params(compiled))
            for compiled in (statement.compile(dialect=dialect) for statement in statements)
        ]
        # On SQLite, writers of this machine's processes take turns on a lock file before
        # they take SQLite's write lock: the kernel wakes the next one the moment it is free,
        # where SQLite's busy handler would sleep in whole milliseconds.
        self._turns = None
        if dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
            self._turns = engine.url.database + "-counters.lock"
        sa.event.listen(engine, "engine_disposed", self.close)

    def __call__(self, amounts):
        """Add every amount in one transaction; return each counter's total after it."""
        params = {"hour": current_hour(), "slot": random.randrange(self.slots)}  # noqa: S311
        statement = None
        try:
            if self._connection is None or self._pid != os.getpid() or not self._quiet():
                self._connect()
            connection, cursor, turns = self._dbapi_connection, self._cursor, self._turns_fd
            if self._postgresql:
                # One statement in autocommit mode: its own transaction, in one round trip.
                params["names"], params["amounts"] = list(amounts), list(amounts.values())
                statement, arguments = self._statements[0]
                cursor.execute(statement, arguments(params))
                return dict(cursor.fetchall())
            if turns is not None:
                fcntl.flock(turns, fcntl.LOCK_EX)
            try:
                totals = {}
                for name, amount in amounts.items():
                    params["name"], params["amount"] = name, amount
                    for statement, arguments in self._statements:
                        cursor.execute(statement, arguments(params))
                    totals[name] = cursor.fetchone()[0]
                statement = None
                connection.commit()
                return totals
            finally:
                if turns is not None:
                    fcntl.flock(turns, fcntl.LOCK_UN)
        except Exception as e:
            raise self._failed(e, statement, params) from e

    def _quiet(self):
        """Whether the server has sent nothing unasked; a connection it closed reads as EOF.

        The pool tests each connection as it is checked out; this one is kept, so it is
        checked the same way before each batch, and replaced when the server or the network
        dropped it between batches.
        """
        if not self._postgresql:
            return True
        if closed_by_server(self._dbapi_connection):
            self.close()
            return False
        return True

    def _connect(self):
        """Open this process's connection and lock file; a forked worker never reuses its
        parent's."""
        self._pid = os.getpid()
        self._connection = self._turns_fd = None
        self._connection = self.engine.raw_connection()
        self._dbapi_connection = self._connection.dbapi_connection
        if self._postgresql:
            self._dbapi_connection.autocommit = True
        self._cursor = self._dbapi_connection.cursor()
        if self._turns is not None:
            self._turns_fd = os.open(self._turns, os.O_RDWR | os.O_CREAT, 0o600)

    def _failed(self, error, statement, params):
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
        return sa.exc.DBAPIError.instance(
            statement,
            params,
            error,
            dialect.loaded_dbapi.Error,
            connection_invalidated=disconnect,
            dialect=dialect,
        )

    def close(self, *_args):
        """Close the connection for good, as ``engine.dispose()`` does with the pool's."""
        if self._connection is not None and self._pid == os.getpid():
            self._connection.invalidate()
            if self._turns_fd is not None:
                os.close(self._turns_fd)
        self._connection = self._turns_fd = None


def _driver_params(compiled):
    """How to pass parameters to the driver: the dict itself, or a tuple in positional order."""
    order = compiled.positiontup
    if order is None:
        return lambda params: params
    if len(order) == 1:
        return lambda params: (params[order[0]],)
    return operator.itemgetter(*order)


def read_counter(name):
    """The committed total of a counter; zero before its first increment."""
    with reading() as conn:
        return conn.execute(_SUM, {"name": name}).scalar_one()


def _hour_totals(name, first, last):
    """Each stored hour's total in [first, last], summed over its slots.

    SQLite keeps hours as text, and a text bound with another precision than the stored rows
    (``12:00:00`` against ``12:00:00.000000``) would drop the first hour. So SQL selects from
    an hour earlier and the exact window is cut here, on parsed datetimes.
    """
    with reading() as conn:
        rows = conn.execute(
            sa.select(counter_hours.c.hour, sa.func.sum(counter_hours.c.value))
            .where(
                counter_hours.c.name == name,
                counter_hours.c.hour > first - timedelta(hours=1),
            )
            .group_by(counter_hours.c.hour)
        ).all()
    totals = {}
    for hour, total in rows:
        if first <= hour <= last:
            totals[hour] = totals.get(hour, 0) + int(total)
    return totals


def counts_per_hour(name, hours, now=None):
    """The last ``hours`` UTC hours, oldest first, zero-filled so that a chart has no gaps."""
    last = (now or utcnow()).replace(minute=0, second=0, microsecond=0)
    first = last - timedelta(hours=hours - 1)
    totals = _hour_totals(name, first, last)
    span = (first + timedelta(hours=i) for i in range(hours))
    return [(hour, totals.get(hour, 0)) for hour in span]


def counts_per_day(name, days, now=None):
    """The last ``days`` UTC days, oldest first, zero-filled; summed from the hourly rows."""
    now = now or utcnow()
    first = now.date() - timedelta(days=days - 1)
    per_day = dict.fromkeys((first + timedelta(days=i) for i in range(days)), 0)
    start = datetime.combine(first, time.min)
    for hour, total in _hour_totals(name, start, now).items():
        per_day[hour.date()] += total
    return list(per_day.items())


def create_token(name, token_hash):
    """Store a new token's hash under a unique name."""
    try:
        with db.engine.begin() as conn:
            conn.execute(
                tokens.insert().values(name=name, token_hash=token_hash, created_at=utcnow())
            )
    except sa.exc.IntegrityError as e:
        raise DuplicateName(name) from e


# Built once: every authenticated request runs it, and building the expression each time cost
# more than executing it.
_FIND_TOKEN = sa.select(tokens.c.id, tokens.c.name, tokens.c.last_used_at).where(
    tokens.c.token_hash == sa.bindparam("token_hash"), tokens.c.revoked_at.is_(None)
)


def find_token(token_hash):
    """The name of the live token with this hash, or None; revocation shows at once."""
    with reading() as conn:
        row = conn.execute(_FIND_TOKEN, {"token_hash": token_hash}).first()
        if row is None:
            return None
        now = utcnow()
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
        conn.execute(tokens.update().where(tokens.c.id == row.id).values(revoked_at=utcnow()))
    return True
