"""Settings read from the environment, so that one build runs locally and on any dyno; and the
one way the service refuses to start when a setting cannot work."""

import os
import sys


class StartupRefused(SystemExit):
    """The service cannot run as configured: the process prints one line and exits.

    A SystemExit, so that the message is the process's only output whether the web process
    (``api/web/server.py``, before it listens) or the release phase's ``flask db upgrade`` was
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


def require(config, name, valid, rule):
    """Refuse to start, naming the setting and its rule, when config[name] breaks it."""
    value = config[name]
    if not valid(value):
        raise InvalidSetting(f"Refusing to start: {name} is {value}; it must be {rule}.")


def database_url(raw):
    """Accept Heroku's ``postgres://`` form and route every PostgreSQL URL to psycopg 3."""
    if raw is None:
        return None
    for prefix in ("postgres://", "postgresql://"):
        if raw.startswith(prefix):
            return "postgresql+psycopg://" + raw[len(prefix) :]
    return raw


def flag(value, default):
    """A boolean the way people write them in a shell: true/false, 1/0, yes/no, on/off;
    ``default`` when unset or empty."""
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_flag(name, default):
    """An environment variable read as a boolean (``flag``)."""
    return flag(os.environ.get(name), default)


def env_number(name, default, kind=int):
    """Read a number; a value that is not one refuses to start, naming the setting."""
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        return kind(value)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise InvalidSetting(
            f"Refusing to start: {name} is {value!r}; it must be {what}."
        ) from None


def env_list(name, default):
    """Read a comma-separated list, dropping blanks; unset or blank gives the default."""
    items = [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]
    return items or default


class Config:
    """Defaults overridden by the environment; see the configuration table in the README."""

    def __init__(self):
        self._database()
        self._requests()
        self._web_process()
        self._rate_limits()
        self._proxies()

    def _database(self):
        # None means "a SQLite file in the instance folder", resolved by the factory,
        # because only the app knows where its instance folder is.
        self.SQLALCHEMY_DATABASE_URI = database_url(os.environ.get("DATABASE_URL"))
        self.SQLITE_BUSY_TIMEOUT_MS = env_number("SQLITE_BUSY_TIMEOUT_MS", 5000)
        # None means "one per request thread"; set it to fit a database plan's connection limit.
        self.DB_POOL_SIZE = env_number("DB_POOL_SIZE", 0) or None
        # Extra connections a process may open beyond the pool, for work outside request threads.
        self.DB_MAX_OVERFLOW = env_number("DB_MAX_OVERFLOW", 2)
        # Seconds to wait for a database server that does not answer, well inside a router's 30 s.
        self.DB_CONNECT_TIMEOUT = env_number("DB_CONNECT_TIMEOUT", 5)
        # The longest one statement may run on PostgreSQL, waits on locks included: a request
        # makes a few statements, so that a stuck database answers 503 inside a router's 30 s
        # instead of holding every thread. 0 turns the limit off.
        self.DB_STATEMENT_TIMEOUT_MS = env_number("DB_STATEMENT_TIMEOUT_MS", 5000)
        # Set on every dyno of a Heroku-style platform, whose disk is wiped at each restart.
        self.DYNO = os.environ.get("DYNO") or None
        self.ALLOW_EPHEMERAL_SQLITE = env_flag("ALLOW_EPHEMERAL_SQLITE", False)
        # Rows per counter; more slots spread concurrent PostgreSQL writers over more row locks.
        self.COUNTER_SLOTS = env_number("COUNTER_SLOTS", 8)
        # Days of hourly history kept for the charts (the totals are kept forever); the charts
        # draw 30, and a year and a month leaves room for a longer view. 0 keeps every hour.
        self.COUNTER_HOURS_RETENTION_DAYS = env_number("COUNTER_HOURS_RETENTION_DAYS", 400)

    def _requests(self):
        self.TOKEN_PREFIX = os.environ.get("TOKEN_PREFIX", "rapi_")
        # How long a new token lasts unless `token create` says otherwise (90d, 12h); empty:
        # tokens never expire. Tokens already made keep the expiry they were made with.
        self.TOKEN_DEFAULT_EXPIRES_IN = os.environ.get("TOKEN_DEFAULT_EXPIRES_IN", "").strip()
        self.ALLOW_QUERY_TOKEN = env_flag("ALLOW_QUERY_TOKEN", True)
        self.LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO").upper()
        # How every log line is written (api/logs.py): text, or one JSON object a line.
        self.LOG_FORMAT = os.environ.get("LOG_FORMAT", "text").strip().lower()
        # Request bodies: the API takes a few bytes of form or JSON; anything bigger is a 413.
        self.MAX_CONTENT_LENGTH = env_number("MAX_CONTENT_LENGTH", 64 * 1024)
        # Seconds a request body has to arrive whole, from when its request reached the app;
        # a body still arriving then is answered 408.
        self.REQUEST_BODY_TIMEOUT = env_number("REQUEST_BODY_TIMEOUT", 10.0, float)
        # Browser origins allowed to call /api/*; "*" lets any page read public data. Tokens
        # travel in a header, never a cookie, so credentials are never allowed.
        self.CORS_ORIGINS = env_list("CORS_ORIGINS", ["*"])
        # The address clients reach the service at, for the examples on its pages; never read
        # from a request, whose Host the client writes. Empty: the examples say $BASE.
        self.PUBLIC_URL = os.environ.get("PUBLIC_URL", "").strip().rstrip("/")

    def _web_process(self):
        # The web process (api/web/server.py). Platforms hand each dyno its port in PORT and size
        # the process count with WEB_CONCURRENCY; HOST is 0.0.0.0 there, 127.0.0.1 in `make run`.
        self.HOST = os.environ.get("HOST", "0.0.0.0")  # noqa: S104 - a dyno must listen on all
        self.PORT = env_number("PORT", 8000)
        self.WEB_CONCURRENCY = env_number("WEB_CONCURRENCY", 2)
        # Threads per worker process: each serves one request at a time, so the database pool
        # keeps one connection per thread.
        self.WEB_THREADS = env_number("WEB_THREADS", 4)
        # Connections each worker process holds at once, idle keep-alive ones and request
        # heads still arriving included (each for 5 s at most); more wait in the kernel's
        # listen queue until one closes. The file-descriptor limit is raised to fit.
        self.WEB_MAX_CONNECTIONS = env_number("WEB_MAX_CONNECTIONS", 2048)
        # Prometheus metrics at /metrics (api/metrics.py), read with a token's metrics scope or
        # from these networks (a scraper's private network); never public by default.
        self.METRICS_ENABLED = env_flag("METRICS_ENABLED", True)
        self.METRICS_PUBLIC_FROM = env_list("METRICS_PUBLIC_FROM", [])
        # One line per answered request on standard output (api/web/access_log.py).
        self.ACCESS_LOG = env_flag("ACCESS_LOG", True)
        # On SIGTERM, seconds that requests in flight get before their worker is killed: inside
        # the 30 s a platform allows between SIGTERM and SIGKILL.
        self.GRACEFUL_TIMEOUT = env_number("GRACEFUL_TIMEOUT", 20)

    def _rate_limits(self):
        # In Flask-Limiter's notation ("120 per minute; 2000 per hour").
        self.RATELIMIT_ENABLED = env_flag("RATELIMIT_ENABLED", True)
        self.RATELIMIT_STORAGE_URI = os.environ.get("RATELIMIT_STORAGE_URI") or "memory://"
        self.RATELIMIT_KEY_PREFIX = os.environ.get("RATELIMIT_KEY_PREFIX", "")
        # Seconds to wait for Redis to connect or answer before counting in this process's
        # memory instead: a Redis that accepts connections but never replies must not hold
        # every request for the driver's default of several seconds.
        self.RATELIMIT_STORAGE_TIMEOUT = env_number("RATELIMIT_STORAGE_TIMEOUT", 0.25, float)
        self.RATELIMIT_STRATEGY = os.environ.get("RATELIMIT_STRATEGY", "fixed-window")
        self.RATELIMIT_PER_CLIENT = os.environ.get("RATELIMIT_PER_CLIENT", "120 per minute")
        self.RATELIMIT_PER_TOKEN = os.environ.get("RATELIMIT_PER_TOKEN", "1200 per minute")
        self.RATELIMIT_FAILED_TOKENS = os.environ.get(
            "RATELIMIT_FAILED_TOKENS", "10 per minute; 100 per day"
        )
        self.RATELIMIT_HEADERS_ALWAYS = env_flag("RATELIMIT_HEADERS_ALWAYS", True)

    def _proxies(self):
        # How many proxies in front of the app set each X-Forwarded-* header. 0 trusts none, so
        # a client cannot choose its own address; Heroku's router is 1 for for/proto/port.
        self.PROXY_FIX_X_FOR = env_number("PROXY_FIX_X_FOR", 0)
        self.PROXY_FIX_X_PROTO = env_number("PROXY_FIX_X_PROTO", 0)
        self.PROXY_FIX_X_HOST = env_number("PROXY_FIX_X_HOST", 0)
        self.PROXY_FIX_X_PORT = env_number("PROXY_FIX_X_PORT", 0)
        self.PROXY_FIX_X_PREFIX = env_number("PROXY_FIX_X_PREFIX", 0)
        # Flask's own setting: the host names requests may carry (".example.com" takes every
        # subdomain); a request for another gets 400. None answers any Host.
        self.TRUSTED_HOSTS = env_list("TRUSTED_HOSTS", None)
