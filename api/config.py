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


def env_list(name, default):
    """Read a comma-separated list, dropping blanks; unset or blank gives the default."""
    items = [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]
    return items or default


class Config:
    """Defaults overridden by the environment; see the configuration table in the README."""

    def __init__(self):
        # None means "a SQLite file in the instance folder", resolved by the factory,
        # because only the app knows where its instance folder is.
        self.SQLALCHEMY_DATABASE_URI = database_url(os.environ.get("DATABASE_URL"))
        self.SQLITE_BUSY_TIMEOUT_MS = int(os.environ.get("SQLITE_BUSY_TIMEOUT_MS", "5000"))
        # Threads per worker process: each serves one request at a time, so the database pool
        # keeps one connection per thread.
        self.WEB_THREADS = int(os.environ.get("WEB_THREADS", "4"))
        # None means "one per thread"; set it to fit a database plan's connection limit.
        self.DB_POOL_SIZE = int(os.environ.get("DB_POOL_SIZE", "0")) or None
        # Extra connections a process may open beyond the pool, for work outside request threads.
        self.DB_MAX_OVERFLOW = int(os.environ.get("DB_MAX_OVERFLOW", "2"))
        # Seconds to wait for a database server that does not answer, well inside a router's 30 s.
        self.DB_CONNECT_TIMEOUT = int(os.environ.get("DB_CONNECT_TIMEOUT", "5"))
        # The longest one statement may run on PostgreSQL, waits on locks included: a request
        # makes a few statements, so that a stuck database answers 503 inside a router's 30 s
        # instead of holding every thread. 0 turns the limit off.
        self.DB_STATEMENT_TIMEOUT_MS = int(os.environ.get("DB_STATEMENT_TIMEOUT_MS", "5000"))
        # Set on every dyno of a Heroku-style platform, whose disk is wiped at each restart.
        self.DYNO = os.environ.get("DYNO") or None
        self.ALLOW_EPHEMERAL_SQLITE = env_flag("ALLOW_EPHEMERAL_SQLITE", False)
        # Rows per counter; more slots spread concurrent PostgreSQL writers over more row locks.
        self.COUNTER_SLOTS = int(os.environ.get("COUNTER_SLOTS", "8"))
        self.TOKEN_PREFIX = os.environ.get("TOKEN_PREFIX", "rapi_")
        self.ALLOW_QUERY_TOKEN = env_flag("ALLOW_QUERY_TOKEN", True)
        self.LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO").upper()

        # Request bodies: the API takes a few bytes of form or JSON; anything bigger is a 413.
        self.MAX_CONTENT_LENGTH = int(os.environ.get("MAX_CONTENT_LENGTH", str(64 * 1024)))
        # Seconds a request body may go without a byte arriving before it is answered 408.
        self.REQUEST_BODY_TIMEOUT = float(os.environ.get("REQUEST_BODY_TIMEOUT", "10"))

        # The web process (api/server.py). Platforms hand each dyno its port in PORT and size
        # the process count with WEB_CONCURRENCY; HOST is 0.0.0.0 there, 127.0.0.1 in `make run`.
        self.HOST = os.environ.get("HOST", "0.0.0.0")  # noqa: S104 - a dyno must listen on all
        self.PORT = int(os.environ.get("PORT", "8000"))
        self.WEB_CONCURRENCY = int(os.environ.get("WEB_CONCURRENCY", "2"))
        # One line per answered request on standard output (api/access_log.py).
        self.ACCESS_LOG = env_flag("ACCESS_LOG", True)
        # On SIGTERM, seconds that requests in flight get before their worker is killed: inside
        # the 30 s a platform allows between SIGTERM and SIGKILL.
        self.GRACEFUL_TIMEOUT = int(os.environ.get("GRACEFUL_TIMEOUT", "20"))

        # Rate limits, in Flask-Limiter's notation ("120 per minute; 2000 per hour").
        self.RATELIMIT_ENABLED = env_flag("RATELIMIT_ENABLED", True)
        self.RATELIMIT_STORAGE_URI = os.environ.get("RATELIMIT_STORAGE_URI", "memory://")
        self.RATELIMIT_KEY_PREFIX = os.environ.get("RATELIMIT_KEY_PREFIX", "")
        self.RATELIMIT_STRATEGY = os.environ.get("RATELIMIT_STRATEGY", "fixed-window")
        self.RATELIMIT_PER_CLIENT = os.environ.get("RATELIMIT_PER_CLIENT", "120 per minute")
        self.RATELIMIT_PER_TOKEN = os.environ.get("RATELIMIT_PER_TOKEN", "1200 per minute")
        self.RATELIMIT_FAILED_TOKENS = os.environ.get(
            "RATELIMIT_FAILED_TOKENS", "10 per minute; 100 per day"
        )
        self.RATELIMIT_HEADERS_ALWAYS = env_flag("RATELIMIT_HEADERS_ALWAYS", True)

        # How many proxies in front of the app set each X-Forwarded-* header. 0 trusts none, so
        # a client cannot choose its own address; Heroku's router is 1 for for/proto/port.
        self.PROXY_FIX_X_FOR = int(os.environ.get("PROXY_FIX_X_FOR", "0"))
        self.PROXY_FIX_X_PROTO = int(os.environ.get("PROXY_FIX_X_PROTO", "0"))
        self.PROXY_FIX_X_HOST = int(os.environ.get("PROXY_FIX_X_HOST", "0"))
        self.PROXY_FIX_X_PORT = int(os.environ.get("PROXY_FIX_X_PORT", "0"))
        self.PROXY_FIX_X_PREFIX = int(os.environ.get("PROXY_FIX_X_PREFIX", "0"))

        # Browser origins allowed to call /api/*; "*" lets any page read public data. Tokens
        # travel in a header, never a cookie, so credentials are never allowed.
        self.CORS_ORIGINS = env_list("CORS_ORIGINS", ["*"])
