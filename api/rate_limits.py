"""Rate limits: a budget per client address, a bigger one per token, a strict one for bad tokens.

Flask-Limiter keeps the counts in ``RATELIMIT_STORAGE_URI``: ``memory://`` gives each worker
process its own, ``redis://...`` shares one count between every worker and every dyno. A 429 is
an answer like any other, so it is a counted hit and a counted error.

The three budgets, every endpoint sharing each one:

- **per client**: requests from one address that carry no valid token;
- **per token**: requests with a valid token, from any address;
- **failed tokens**: requests from one address whose token was rejected. The token is checked
  before the limits are (``identify_client``), so only a rejected token spends this budget and
  is refused when it is gone; a valid token from the same address keeps working. Each rejected
  token is counted as it is checked, by the storage's atomic increment, so the budget is exact
  however many guesses arrive at once.

Flask-Limiter re-reads and re-parses every limit string on every request, and limits'
``memory://`` storage starts a timer thread every few milliseconds under load and can admit a
few more than its limit under concurrency. Here each limit is parsed once
(:class:`ParsedOnce`), and ``memory://`` with the default fixed window runs on
:class:`FixedWindowMemory`, which expires counts as it reads them, under one lock, with no
thread. Together they cut the limiter's cost per request to well under half (BENCHMARKS.md).
"""

import dataclasses
import math
import threading
import time

from flask import current_app, g, request
from flask_limiter import ApplicationLimit, Limiter
from flask_limiter._limits import RuntimeLimit
from limits.storage import Storage

from . import auth

# CORS preflights and the platform's health checks never touch a limit: neither is a hit.
UNLIMITED_METHODS = frozenset({"OPTIONS"})
UNLIMITED_PATHS = frozenset({"/healthz"})

# Storage scopes of the budgets; every endpoint shares each one.
REQUESTS_SCOPE = "requests"
FAILED_TOKENS_SCOPE = "failed-tokens"

# What a 429 says, for each of the two kinds of budget.
TOO_MANY_REQUESTS = "Too many requests; retry after the seconds in Retry-After"
TOO_MANY_FAILED_TOKENS = (
    "Too many failed token attempts from this address; retry after the seconds in Retry-After"
)

# The draft IETF RateLimit fields (draft-ietf-httpapi-ratelimit-headers, as most clients read
# them: the reset is in seconds from now), and Retry-After on a 429.
HEADER_NAMES = (
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "RateLimit-Policy",
    "Retry-After",
)

# The scheme memory:// becomes when the strategy is the fixed window.
FIXED_WINDOW_MEMORY = "fixed-window-memory"


class FixedWindowMemory(Storage):
    """limits' storage interface for fixed windows, in this process's memory, exact and lazy.

    Replaces limits' ``MemoryStorage`` (checked against limits 5.8) for the fixed window:
    that one arms a ``threading.Timer`` after every increment to expire keys, and takes a
    per-key lock that expiry may drop while another thread holds it. Here one lock guards
    every count, a count past its expiry reads as zero and starts a new window, and expired
    keys are swept in passing once every ``SWEEP_EVERY`` new windows.
    """

    STORAGE_SCHEME = [FIXED_WINDOW_MEMORY]
    SWEEP_EVERY = 1024

    def __init__(self, uri=None, wrap_exceptions=False, **options):
        self._lock = threading.Lock()
        # key -> [count, expiry as a time.time() value]
        self._windows = {}
        self._opened = 0
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)

    @property
    def base_exceptions(self):
        return ValueError

    def _live(self, key, now):
        window = self._windows.get(key)
        if window is not None and window[1] <= now:
            del self._windows[key]
            return None
        return window

    def incr(self, key, expiry, amount=1):
        now = time.time()
        with self._lock:
            window = self._live(key, now)
            if window is None:
                window = self._windows[key] = [0, now + expiry]
                self._opened += 1
                if self._opened % self.SWEEP_EVERY == 0:
                    self._sweep(now)
            window[0] += amount
            return window[0]

    def decr(self, key, amount=1):
        with self._lock:
            window = self._live(key, time.time())
            if window is None:
                return 0
            window[0] = max(window[0] - amount, 0)
            return window[0]

    def get(self, key):
        with self._lock:
            window = self._live(key, time.time())
            return 0 if window is None else window[0]

    def get_expiry(self, key):
        now = time.time()
        with self._lock:
            window = self._live(key, now)
            return now if window is None else window[1]

    def check(self):
        return True

    def reset(self):
        with self._lock:
            cleared = len(self._windows)
            self._windows.clear()
        return cleared

    def clear(self, key):
        with self._lock:
            self._windows.pop(key, None)

    def _sweep(self, now):
        for key in [key for key, (_, expiry) in self._windows.items() if expiry <= now]:
            del self._windows[key]


@dataclasses.dataclass(eq=False)
class KeptLimit(RuntimeLimit):
    """A runtime limit built once and kept: equal only to itself, so hashing it is cheap.

    Flask-Limiter puts runtime limits in sets on every request, and the dataclass hash it
    gives them walks every field each time.
    """

    __eq__ = object.__eq__
    __hash__ = object.__hash__


class ParsedOnce(ApplicationLimit):
    """An application limit whose limit string is parsed once, not on every request.

    Flask-Limiter (checked against 4.1) turns a limit's string into new runtime limits each
    time it evaluates the limit, which is every request; for a fixed string the result is
    the same every time, so it is built once and kept.
    """

    def __iter__(self):
        kept = self.__dict__.get("_kept")
        if kept is None:
            kept = tuple(
                KeptLimit(**{field.name: getattr(limit, field.name) for field in FIELDS})
                for limit in super().__iter__()
            )
            self.__dict__["_kept"] = kept
        return iter(kept)


FIELDS = dataclasses.fields(RuntimeLimit)


def unlimited():
    """Requests that no limit applies to."""
    return request.method in UNLIMITED_METHODS or request.path in UNLIMITED_PATHS


def token_endpoints(app):
    """The endpoints whose views check a token anyway: the API resources and every page behind
    ``optional_token``. Only there does the limiter look one up, and the view reuses that
    answer, so limiting never adds a database round trip."""
    return frozenset(
        endpoint
        for endpoint, view in app.view_functions.items()
        # A Resource's view carries its class; a decorated page function carries the mark.
        if getattr(getattr(view, "view_class", view), "reads_token", False)
    )


def identify_client():
    """Before the limits are checked: whose token this request carries, if a valid one."""
    token = None
    if (
        auth.credentials_presented()
        and request.endpoint in current_app.extensions["token_endpoints"]
        and not unlimited()
    ):
        token = auth.presented_token()
    g.rate_limit_holder = auth.verify_token(token) if token else None


def client_address():
    """The client's address as the app sees it after ProxyFix: the real one, not a header's."""
    return request.remote_addr or "unknown"


def token_holder():
    return g.get("rate_limit_holder")


def storage_uri(config):
    """Where the counts live: memory:// with the fixed window runs on FixedWindowMemory."""
    uri = config["RATELIMIT_STORAGE_URI"]
    if uri.startswith("memory://") and config["RATELIMIT_STRATEGY"] == "fixed-window":
        return FIXED_WINDOW_MEMORY + uri.removeprefix("memory")
    return uri


def window_headers(limit, breached):
    """The RateLimit fields for one limit, and Retry-After when it was breached."""
    reset_at, remaining = limit.window
    reset = str(max(1, math.ceil(reset_at - time.time())))
    item = limit.limit
    headers = [
        ("RateLimit-Limit", str(item.amount)),
        ("RateLimit-Remaining", str(remaining)),
        ("RateLimit-Reset", reset),
        ("RateLimit-Policy", f"{item.amount};w={item.get_expiry()}"),
    ]
    if breached:
        headers.append(("Retry-After", reset))
    return headers


def init_app(app):
    """Build this app's limiter from its config; with RATELIMIT_ENABLED off, add nothing."""
    config = app.config
    if not config["RATELIMIT_ENABLED"]:
        return
    headers_always = config["RATELIMIT_HEADERS_ALWAYS"]
    app.config["RATELIMIT_STORAGE_URI"] = storage_uri(config)

    limiter = Limiter(
        key_func=client_address,
        application_limits=[
            ParsedOnce(
                config["RATELIMIT_PER_CLIENT"],
                key_function=client_address,
                scope=REQUESTS_SCOPE,
                exempt_when=token_holder,
                error_message=TOO_MANY_REQUESTS,
            ),
            ParsedOnce(
                config["RATELIMIT_PER_TOKEN"],
                key_function=lambda: f"token:{token_holder()}",
                scope=REQUESTS_SCOPE,
                exempt_when=lambda: token_holder() is None,
                error_message=TOO_MANY_REQUESTS,
            ),
            ParsedOnce(
                config["RATELIMIT_FAILED_TOKENS"],
                key_function=client_address,
                scope=FAILED_TOKENS_SCOPE,
                exempt_when=lambda: not auth.token_rejected(),
                error_message=TOO_MANY_FAILED_TOKENS,
            ),
        ],
        # Unrouted requests (404, 405) have no endpoint, and Flask-Limiter skips those; they
        # still cost a counted hit, so they share the client's budget under one name.
        request_identifier=lambda: request.endpoint or "unrouted",
        # The RateLimit fields below replace Flask-Limiter's X-RateLimit ones.
        headers_enabled=False,
        # When Redis is unreachable, keep limiting per process rather than failing requests.
        in_memory_fallback_enabled=True,
    )
    limiter.request_filter(unlimited)

    # Registered before the limiter's own hooks so that it runs first.
    app.before_request(identify_client)

    @app.after_request
    def add_rate_limit_headers(response):
        """Tell clients their budget, and a 429 when to come back."""
        breached = response.status_code == 429
        if not (headers_always or breached):
            return response
        # A breached limit is the one to report; otherwise the request budget, not the
        # failed-token one that a rejected token also meets.
        chosen = limiter.current_limit if breached else None
        if chosen is None:
            chosen = next(
                (lim for lim in limiter.current_limits if REQUESTS_SCOPE in lim.request_args),
                None,
            )
        if chosen is None:
            return response
        try:
            # None of these is set yet, so extend() skips update()'s search for old values.
            response.headers.extend(window_headers(chosen, breached))
        except Exception:
            # The storage went away between the check and now; the answer stands without them.
            current_app.logger.warning("rate limit storage unreachable for headers")
        return response

    limiter.init_app(app)
    app.extensions["token_endpoints"] = token_endpoints(app)
