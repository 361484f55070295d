"""The engine: pool sizing, what each new connection is told, the migration lock.

One engine per app, bound by :func:`init_app`. PostgreSQL connections get their statement
timeout and TCP keepalives here, measure the server's clock (clock.py), are watched by the
deadline watchdog while a request uses them (deadlines.py), are checked without a round trip as
they leave the pool, and count as lost when the server turns read-only or shuts down; SQLite
connections get WAL. Whether the database can take a hit now is the counter writer's to say
(``counter_writer.py``).
"""

import time
from contextlib import contextmanager

import sqlalchemy as sa

from ..config import EphemeralDatabase, InvalidSetting, require
from ..speedups.pool import drop_closed_connections
from . import clock, deadlines
from .tables import MAX_COUNTER_SLOTS, db

# SQLSTATEs that mean this server cannot do the work now, though the connection still answers:
# a primary turned read-only standby by a failover (25006), or a server shutting down or
# starting up. The connection is dropped like a broken one, and the request answers 503.
UNAVAILABLE_SQLSTATES = frozenset({"25006", "57P01", "57P02", "57P03"})

EPHEMERAL_SQLITE_MESSAGE = (
    "Refusing to start: DYNO is set, so this disk is wiped at every restart and not shared "
    "between dynos, and SQLite on it would lose every count; set DATABASE_URL to the "
    "platform's PostgreSQL, or ALLOW_EPHEMERAL_SQLITE=true to run anyway."
)

# Any constant works, as long as every release of this app uses the same one.
MIGRATION_LOCK_KEY = 0x61706930_6D696772


def server_unavailable(error):
    """Whether a driver error says the database cannot serve now, rather than that we erred."""
    return getattr(error, "sqlstate", None) in UNAVAILABLE_SQLSTATES


def engine_options(config, url):
    """Pool settings for a server database; SQLite keeps SQLAlchemy's, as its file needs none."""
    if url.get_backend_name() == "sqlite":
        return {}
    options = {
        # One connection per request thread, so that no request waits for another's, and one
        # more that the counter writer keeps for itself.
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


def bind(app):
    """Bind the engine to the app, and return it: a pool sized to the web threads for
    PostgreSQL, and for SQLite the settings concurrent workers need, refused where the
    platform's disk is ephemeral."""
    config = app.config
    try:
        url = sa.engine.make_url(config["SQLALCHEMY_DATABASE_URI"])
    except sa.exc.ArgumentError:
        # Not quoted: the URL may hold a password.
        raise InvalidSetting(
            "Refusing to start: DATABASE_URL is not a database URL; it must look like "
            "postgresql://user:password@host:5432/name or sqlite:///path/to/file."
        ) from None
    require(config, "DB_STATEMENT_TIMEOUT_MS", lambda ms: ms >= 0, "0 (no limit) or more")
    require(
        config,
        "COUNTER_SLOTS",
        lambda slots: 1 <= slots <= MAX_COUNTER_SLOTS,
        f"from 1 to {MAX_COUNTER_SLOTS}",
    )
    if url.get_backend_name() == "sqlite" and config["DYNO"]:
        if not config["ALLOW_EPHEMERAL_SQLITE"]:
            raise EphemeralDatabase(EPHEMERAL_SQLITE_MESSAGE)
        app.logger.warning("ALLOW_EPHEMERAL_SQLITE is set: counts will be lost at each restart")
    # Options the app was given explicitly win over the sized defaults.
    config["SQLALCHEMY_ENGINE_OPTIONS"] = {
        **engine_options(config, url),
        **config.get("SQLALCHEMY_ENGINE_OPTIONS", {}),
    }
    db.init_app(app)
    with app.app_context():
        engine = db.engine
    if engine.dialect.name == "postgresql":
        pre_ping = config["SQLALCHEMY_ENGINE_OPTIONS"].get("pool_pre_ping", False)
        listen_postgresql(engine, int(config["DB_STATEMENT_TIMEOUT_MS"]), pre_ping)
    elif engine.dialect.name == "sqlite":
        listen_sqlite(engine, int(config["SQLITE_BUSY_TIMEOUT_MS"]))
    return engine


def listen_postgresql(engine, statement_timeout, pre_ping):
    """What every PostgreSQL connection is told and checked for."""
    if not pre_ping:
        sa.event.listen(engine, "checkout", drop_closed_connections)

    patience = deadlines.patience(statement_timeout)

    @sa.event.listens_for(engine, "connect")
    def _postgresql_session(dbapi_connection, record):
        sock = deadlines.socket_of(dbapi_connection)
        if patience:
            # What reading() registers with the watchdog each time a request uses it.
            record.info[deadlines.WATCHED] = (sock, patience)
        # Set once per connection rather than as a startup option, which connection
        # poolers such as PgBouncer refuse. Watched whoever connects: connect_timeout ends
        # only the handshake, and a server may stall right after it.
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True
        with deadlines.watching(sock, patience):
            dbapi_connection.execute(f"SET statement_timeout = {statement_timeout}")
            if clock.due():
                clock.measure(dbapi_connection)
        dbapi_connection.autocommit = autocommit

    @sa.event.listens_for(engine, "handle_error")
    def _unavailable_is_a_disconnect(context):
        # SQLAlchemy then invalidates the connection (and the pool's older ones), and the
        # error handler answers 503: after a failover, new connections find the primary.
        if server_unavailable(context.original_exception):
            context.is_disconnect = True


def listen_sqlite(engine, busy_timeout):
    """What every SQLite connection is told: WAL, and how long to wait for the write lock."""

    @sa.event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        # WAL lets readers run beside the single writer; NORMAL sync in WAL mode keeps
        # every committed transaction across a process crash or SIGKILL.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout}")
        cursor.close()


def reading():
    """A connection for reads, in autocommit mode on a server: no BEGIN before the query and
    no ROLLBACK when it goes back to the pool, two round trips saved. SQLite's driver begins
    no transaction for a SELECT anyway, and switching its mode costs more than it saves.

    A context manager: on PostgreSQL the connection is watched for as long as it is held
    (deadlines.py), so that a server that stops answering ends the request with a 503
    instead of holding it."""
    return _Reading()


class _Reading:
    """What ``reading()`` returns; a class rather than a generator, a microsecond cheaper on
    every token check."""

    __slots__ = ("_connection", "_watched")

    def __enter__(self):
        connection = self._connection = db.engine.connect()
        self._watched = None
        if connection.dialect.name == "sqlite":
            return connection
        connection.execution_options(isolation_level="AUTOCOMMIT")
        watched = connection.info.get(deadlines.WATCHED)
        if watched is not None:
            sock, patience = self._watched = watched
            deadlines.watch(sock, time.monotonic() + patience)
        return connection

    def __exit__(self, *_exc):
        # Unwatched before it goes back to the pool, where another request may take it; in
        # autocommit mode its return makes no round trip.
        if self._watched is not None:
            deadlines.unwatch(self._watched[0])
        self._connection.close()


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
