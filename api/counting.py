"""Hit and error counting: the one rule for which requests count, and the hooks that count.

Counting happens in request hooks rather than in error handlers, because Flask-RESTful
replaces the app's exception handlers for its own routes and errors raised inside a
Resource never reach them.
"""

from flask import g, request

from . import policy, storage

UNCOUNTED_METHODS = frozenset({"HEAD", "OPTIONS"})

# What the hooks have counted for a request, kept in its WSGI environ, which outlives the
# request context: the edge's last resort (api/edge.py) reads it to count what they could not.
COUNTED = "api.counted"
HIT, ERROR = "hit", "error"


def counts_as_hit():
    """Every request is a hit except HEAD, OPTIONS and the routes whose policy says not
    (static files, health checks)."""
    return request.method not in UNCOUNTED_METHODS and policy.current().counted


def count_hit():
    """Count the hit before the view runs, so that a hit count it reports includes itself."""
    if counts_as_hit():
        g.hit_count = storage.increment_counter("hits")
        request.environ[COUNTED] = HIT


def count_error(response):
    """Count every counted request that ended with a 4xx or 5xx, whatever produced it."""
    if "hit_count" in g and response.status_code >= 400:
        storage.increment_counter("errors")
        request.environ[COUNTED] = ERROR
    return response


def count_unanswered():
    """Count a request whose answer escaped the app, which the edge answers with a 500: its
    hit when ``count_hit`` never saw it, and its error unless ``count_error`` counted one."""
    counted = request.environ.get(COUNTED)
    if counted == ERROR or (counted is None and not counts_as_hit()):
        return
    if counted is None:
        storage.increment_counter("hits")
    storage.increment_counter("errors")


def current_hits():
    """The hit count this request saw, itself included; for a request that is not a hit (a
    HEAD asking what a GET would answer), the committed total."""
    if "hit_count" in g:
        return g.hit_count
    return storage.read_counter("hits")


def init_app(app):
    """Count first and count the error last: the factory calls this before any other part
    registers a hook, so that no hook can skip either."""
    app.before_request(count_hit)
    app.after_request(count_error)
