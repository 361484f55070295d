"""The database: its tables and every SQL statement the service runs.

Resources, pages, auth and the CLI call the named functions below and never build SQL
themselves, so that each query can be read, tuned and tested in one place.
"""

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from flask_sqlalchemy import SQLAlchemy

db = SQLAlchemy()

counters = db.Table(
    "counters",
    sa.Column("name", sa.String(32), primary_key=True),
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

_INCREMENT = sa.text(
    "INSERT INTO counters (name, value) VALUES (:name, :amount) "
    "ON CONFLICT (name) DO UPDATE SET value = counters.value + excluded.value "
    "RETURNING value"
)


class DuplicateName(Exception):
    """A token with this name already exists."""


class UnknownName(Exception):
    """No token has this name."""


def init_app(app):
    """Bind the engine to the app and give SQLite the settings concurrent workers need."""
    db.init_app(app)
    with app.app_context():
        engine = db.engine
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


def utcnow():
    """Naive UTC, the one time format stored in every column on every backend."""
    return datetime.now(UTC).replace(tzinfo=None)


def database_reachable():
    """One round trip, so that a health check proves the database answers."""
    try:
        with db.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.DBAPIError:
        return False
    return True


def increment_counter(name, amount=1):
    """Increment in SQL so that concurrent workers never lose a count; return the new value."""
    with db.engine.begin() as conn:
        return conn.execute(_INCREMENT, {"name": name, "amount": amount}).scalar_one()


def read_counter(name):
    """The committed value of a counter; zero before its first increment."""
    with db.engine.connect() as conn:
        value = conn.execute(
            sa.select(counters.c.value).where(counters.c.name == name)
        ).scalar_one_or_none()
    return value or 0


def create_token(name, token_hash):
    """Store a new token's hash under a unique name."""
    try:
        with db.engine.begin() as conn:
            conn.execute(
                tokens.insert().values(name=name, token_hash=token_hash, created_at=utcnow())
            )
    except sa.exc.IntegrityError as e:
        raise DuplicateName(name) from e


def find_token(token_hash):
    """The name of the live token with this hash, or None; revocation shows at once."""
    with db.engine.connect() as conn:
        row = conn.execute(
            sa.select(tokens.c.id, tokens.c.name, tokens.c.last_used_at).where(
                tokens.c.token_hash == token_hash, tokens.c.revoked_at.is_(None)
            )
        ).first()
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
