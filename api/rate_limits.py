"""Rate limits: a budget per client address, a bigger one per token, a strict one for bad tokens.

Flask-Limiter keeps the counts in ``RATELIMIT_STORAGE_URI``: ``memory://`` gives each worker
process its own, ``redis://...`` shares one count between every worker and every dyno. A 429 is
an answer like any other, so it is a counted hit and a counted error.

The three budgets, every endpoint sharing each one:

- **per client**: requests from one address that carry no valid token;
- **per token**: requests with a valid token, from any address: the token's own limit (``token
  create --rate``), else ``RATELIMIT_PER_TOKEN``;
- **failed tokens**: requests from one address whose token was rejected. The token is checked
  before the limits are (``auth.check_sent_token``), so only a rejected token spends this budget and
  is refused when it is gone; a valid token from the same address keeps working. Each rejected
  token is counted as it is checked, by the storage's atomic increment, so the budget is exact
  however many guesses arrive at once.

Each limit is parsed once, and ``memory://`` with the default fixed window counts in an exact,
bounded store without a timer thread (``api/speedups/limiter.py``).
"""

import math
import time

from flask import current_app, request

from . import auth, metrics, policy
from .config import require
from .speedups.limiter import FIXED_WINDOW_MEMORY, ParsedOnce, RequestLimiter

# CORS preflights never touch a limit: they are not hits.
UNLIMITED_METHODS = frozenset({"OPTIONS"})

# Storage scopes of the budgets; every endpoint shares each one.
REQUESTS_SCOPE = "requests"
FAILED_TOKENS_SCOPE = "failed-tokens"

# What a 429 says, for each of the two kinds of budget.
TOO_MANY_REQUESTS = "Too many requests; retry after the seconds in Retry-After"
TOO_MANY_FAILED_TOKENS = (
    "Too many failed token attempts from this address; retry after the seconds in Retry-After"
)


def unlimited():
    """Requests that no limit applies to: preflights, and routes whose policy says so;
    decided once per request."""
    facts = policy.facts()
    if facts.limited is None:
        facts.limited = request.method not in UNLIMITED_METHODS and facts.policy.limited
    return not facts.limited


def address_key():
    """The client's address as the app sees it after ProxyFix: the real one, not a header's."""
    return request.remote_addr or "unknown"


def token_key():
    """A valid token's budget is its own, by its id, whatever its name or secret."""
    return f"token:{auth.sent_token().id}"


def token_limit(default):
    """The limit of the valid token this request carries: its own, else the default."""

    def limit():
        token = auth.sent_token()
        return default if token is None or token.rate_limit is None else token.rate_limit

    return limit


def storage_options(config):
    """Bounded waits on a Redis that is slow or stalled, so that the fallback takes over."""
    if not config["RATELIMIT_STORAGE_URI"].startswith(("redis://", "rediss://", "redis+")):
        return {}
    timeout = config["RATELIMIT_STORAGE_TIMEOUT"]
    return {"socket_timeout": timeout, "socket_connect_timeout": timeout}


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


def budgets(config):
    """The three budgets, each parsed once from its setting."""
    return [
        ParsedOnce(
            config["RATELIMIT_PER_CLIENT"],
            key_function=address_key,
            scope=REQUESTS_SCOPE,
            exempt_when=lambda: auth.sent_token() is not None,
            error_message=TOO_MANY_REQUESTS,
        ),
        ParsedOnce(
            token_limit(config["RATELIMIT_PER_TOKEN"]),
            key_function=token_key,
            scope=REQUESTS_SCOPE,
            exempt_when=lambda: auth.sent_token() is None,
            error_message=TOO_MANY_REQUESTS,
        ),
        ParsedOnce(
            config["RATELIMIT_FAILED_TOKENS"],
            key_function=address_key,
            scope=FAILED_TOKENS_SCOPE,
            exempt_when=lambda: not auth.token_rejected(),
            error_message=TOO_MANY_FAILED_TOKENS,
        ),
    ]


def budget_of(limit):
    """Which budget a limit is: the client's, a token's, or failed tokens'."""
    if FAILED_TOKENS_SCOPE in limit.request_args:
        return "failed-tokens"
    return "token" if auth.sent_token() is not None else "client"


def headers_hook(limiter, always):
    """The after-request hook that tells clients their budget, and a 429 when to come back."""

    def add_rate_limit_headers(response):
        breached = response.status_code == 429
        if not (always or breached):
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
        if breached:
            metrics.rate_limited(budget_of(chosen))
        try:
            # None of these is set yet: added, not searched for and replaced.
            response.headers.extend(window_headers(chosen, breached))
        except Exception:
            # The storage went away between the check and now; the answer stands without them.
            current_app.logger.warning("rate limit storage unreachable for headers")
        return response

    return add_rate_limit_headers


def init_app(app):
    """Build this app's limiter from its config; with RATELIMIT_ENABLED off, add nothing.

    Its hooks go in the request path's order, after the token check (auth.init_app):
    Flask-Limiter's check; after the view, Flask-Limiter's own hook, then the RateLimit
    headers.
    """
    config = app.config
    if not config["RATELIMIT_ENABLED"]:
        return
    require(config, "RATELIMIT_STORAGE_TIMEOUT", lambda s: s > 0, "more than 0 seconds")
    config["RATELIMIT_STORAGE_URI"] = storage_uri(config)
    config.setdefault("RATELIMIT_STORAGE_OPTIONS", storage_options(config))
    limiter = RequestLimiter(
        key_func=address_key,
        application_limits=budgets(config),
        # Unrouted requests (404, 405) have no endpoint, and Flask-Limiter skips those; they
        # still cost a counted hit, so they share the client's budget under one name.
        request_identifier=lambda: request.endpoint or "unrouted",
        # The RateLimit fields replace Flask-Limiter's X-RateLimit ones.
        headers_enabled=False,
        # When Redis is unreachable, keep limiting per process rather than failing requests.
        in_memory_fallback_enabled=True,
    )
    limiter.request_filter(unlimited)
    app.after_request(headers_hook(limiter, config["RATELIMIT_HEADERS_ALWAYS"]))
    limiter.init_app(app)
