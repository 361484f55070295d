"""Hit and error counting: the one rule for which requests count, and the hooks that count.

Counting happens in request hooks rather than in error handlers, because Flask-RESTful
replaces the app's exception handlers for its own routes and errors raised inside a
Resource never reach them.
"""

from flask import current_app, g, request

from . import storage

UNCOUNTED_METHODS = frozenset({"HEAD", "OPTIONS"})
UNCOUNTED_PATHS = frozenset({"/healthz"})


def counts_as_hit():
    """Every request is a hit except static files, health checks, HEAD and OPTIONS."""
    if request.method in UNCOUNTED_METHODS or request.path in UNCOUNTED_PATHS:
        return False
    return not request.path.startswith(current_app.static_url_path + "/")


def count_hit():
    """Count the hit before the view runs, so that a hit count it reports includes itself."""
    if counts_as_hit():
        g.hit_count = storage.increment_counter("hits")


def count_error(response):
    """Count every counted request that ended with a 4xx or 5xx, whatever produced it."""
    if "hit_count" in g and response.status_code >= 400:
        storage.increment_counter("errors")
    return response


def current_hits():
    """The hit count this request saw, itself included; for a request that is not a hit (a
    HEAD asking what a GET would answer), the committed total."""
    if "hit_count" in g:
        return g.hit_count
    return storage.read_counter("hits")


def init_app(app):
    """Register the counting hooks ahead of any others, so that no hook can skip them."""
    app.before_request_funcs.setdefault(None, []).insert(0, count_hit)
    app.after_request(count_error)
