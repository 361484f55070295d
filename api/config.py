"""Settings read from the environment, so that one build runs locally and on any dyno."""

import os


def database_url(raw):
    """Accept Heroku's ``postgres://`` form and route every PostgreSQL URL to psycopg 3."""
    if raw is None:
        return None
    for prefix in ("postgres://", "postgresql://"):
        if raw.startswith(prefix):
            return "postgresql+psycopg://" + raw[len(prefix) :]
    return raw


def env_flag(name, default):
    """Read a boolean the way people write them in a shell: true/false, 1/0, yes/no, on/off."""
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


class Config:
    """Defaults overridden by the environment; see the configuration table in the README."""

    def __init__(self):
        # None means "a SQLite file in the instance folder", resolved by the factory,
        # because only the app knows where its instance folder is.
        self.SQLALCHEMY_DATABASE_URI = database_url(os.environ.get("DATABASE_URL"))
        self.SQLITE_BUSY_TIMEOUT_MS = int(os.environ.get("SQLITE_BUSY_TIMEOUT_MS", "5000"))
        # Threads per gunicorn worker, the same variable and default as gunicorn.conf.py: each
        # thread serves one request at a time, so the pool needs one connection per thread.
        self.GUNICORN_THREADS = int(os.environ.get("GUNICORN_THREADS", "4"))
        # None means "one per thread"; set it to fit a database plan's connection limit.
        self.DB_POOL_SIZE = int(os.environ.get("DB_POOL_SIZE", "0")) or None
        # Extra connections a process may open beyond the pool, for work outside request threads.
        self.DB_MAX_OVERFLOW = int(os.environ.get("DB_MAX_OVERFLOW", "2"))
        # Seconds to wait for a database server that does not answer, well inside a router's 30 s.
        self.DB_CONNECT_TIMEOUT = int(os.environ.get("DB_CONNECT_TIMEOUT", "5"))
        # Set on every dyno of a Heroku-style platform, whose disk is wiped at each restart.
        self.DYNO = os.environ.get("DYNO") or None
        self.ALLOW_EPHEMERAL_SQLITE = env_flag("ALLOW_EPHEMERAL_SQLITE", False)
        # Rows per counter; more slots spread concurrent PostgreSQL writers over more row locks.
        self.COUNTER_SLOTS = int(os.environ.get("COUNTER_SLOTS", "8"))
        self.TOKEN_PREFIX = os.environ.get("TOKEN_PREFIX", "rapi_")
        self.ALLOW_QUERY_TOKEN = env_flag("ALLOW_QUERY_TOKEN", True)
        self.LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO").upper()
