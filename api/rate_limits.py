"""Rate limits: a budget per client address, a bigger one per token, a strict one for bad tokens.

Flask-Limiter keeps the counts in ``RATELIMIT_STORAGE_URI``: ``memory://`` gives each worker
process its own, ``redis://...`` shares one count between every worker and every dyno. A 429 is
an answer like any other, so it is a counted hit and a counted error.
"""

import math
import time

from flask import current_app, g, request
from flask_limiter import ApplicationLimit, Limiter

from . import auth

# CORS preflights and the platform's health checks never touch a limit: neither is a hit.
UNLIMITED_METHODS = frozenset({"OPTIONS"})
UNLIMITED_PATHS = frozenset({"/healthz"})

# Storage scopes of the two budgets; every endpoint shares each one.
REQUESTS_SCOPE = "requests"
FAILED_TOKENS_SCOPE = "failed-tokens"

# What a 429 says, for each of the two budgets.
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
    """Before the limits are checked: note whether a token came, and whose it is."""
    token = None
    if request.endpoint in current_app.extensions["token_endpoints"] and not unlimited():
        token = auth.presented_token()
    g.rate_limit_token_presented = token is not None
    g.rate_limit_holder = auth.verify_token(token) if token else None


def client_address():
    """The client's address as the app sees it after ProxyFix: the real one, not a header's."""
    return request.remote_addr or "unknown"


def budget_key():
    """A valid token's own budget follows the token; everyone else is counted by address."""
    holder = g.get("rate_limit_holder")
    return f"token:{holder}" if holder else f"ip:{client_address()}"


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
    if not app.config["RATELIMIT_ENABLED"]:
        return
    config = app.config
    per_client, per_token = config["RATELIMIT_PER_CLIENT"], config["RATELIMIT_PER_TOKEN"]
    failed_tokens = config["RATELIMIT_FAILED_TOKENS"]
    headers_always = config["RATELIMIT_HEADERS_ALWAYS"]

    limiter = Limiter(
        key_func=client_address,
        application_limits=[
            ApplicationLimit(
                limit_provider=lambda: per_token if g.get("rate_limit_holder") else per_client,
                key_function=budget_key,
                scope=REQUESTS_SCOPE,
                error_message=TOO_MANY_REQUESTS,
            ),
            # Tested before the view and charged after it, only when the token was wrong, so
            # that guessing tokens stops long before the request budget would stop it.
            ApplicationLimit(
                # No token, no limit: an empty string yields none, which is cheaper for the
                # usual request than an exempt_when check on a limit built anyway.
                limit_provider=lambda: failed_tokens if g.get("rate_limit_token_presented") else "",
                key_function=client_address,
                scope=FAILED_TOKENS_SCOPE,
                deduct_when=lambda _response: auth.token_rejected(),
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

    # Registered before the limiter's own hooks so that it runs first, and its headers hook
    # after the limiter has charged the failed-token budget.
    app.before_request(identify_client)

    @app.after_request
    def add_rate_limit_headers(response):
        """Tell clients their budget, and a 429 when to come back."""
        breached = response.status_code == 429
        if not (headers_always or breached):
            return response
        limits = limiter.current_limits
        chosen = limiter.current_limit if breached else None
        if chosen is None:
            chosen = next((lim for lim in limits if REQUESTS_SCOPE in lim.request_args), None)
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
    app.extensions["rate_limiter"] = limiter
    app.extensions["token_endpoints"] = token_endpoints(app)
