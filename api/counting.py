"""Hit and error counting: the one rule for which requests count, and the hooks that count.

Counting happens in request hooks rather than in error handlers, because Flask-RESTful
replaces the app's exception handlers for its own routes and errors raised inside a
Resource never reach them.

A request is counted once, in one write: its hit just before the view runs (so that a hit
count it reports includes itself), with the use of the valid token it sends, and its error,
if it ends with one, after the view. A
request refused before its hit was counted (a 429 from the rate limiter) is counted at the
end, its hit and its error in one transaction, so that a refused client costs the service
one write, as a served one does, rather than two.
"""

from flask import current_app, g, request

from . import auth, policy, storage

UNCOUNTED_METHODS = frozenset({"HEAD", "OPTIONS"})

# What the hooks have counted for a request, kept in its WSGI environ, which outlives the
# request context: the edge's last resort (api/web/edge.py) reads it to count what they could not.
# FAILED marks a request whose count failed (the database away): it is not tried again for
# the 503 that failure is answered with.
COUNTED = "api.counted"
HIT, ERROR, FAILED = "hit", "error", "failed"


# How often each process writes a token's last use, at the most.
LAST_USED_EVERY = 60


def _count(amounts, touched, counted, reads=()):
    """Commit ``amounts``; the request's state becomes ``counted``, or FAILED if that raised."""
    environ = request.environ
    environ[COUNTED] = FAILED
    totals = storage.increment_counters(amounts, touched, reads)
    environ[COUNTED] = counted
    return totals


def _with_usage(amounts):
    """``amounts`` and, for a request that sent a valid token, that token's own request in the
    same write, with its last use when it is due."""
    token = auth.sent_token()
    if token is None:
        return amounts, ()
    amounts[token.usage_counter] = 1
    cache = current_app.extensions["token_cache"]
    return amounts, (token.id,) if cache.due_for_touch(token, LAST_USED_EVERY) else ()


def counts_as_hit():
    """Every request is a hit except HEAD, OPTIONS and the routes whose policy says not
    (static files, health checks); decided once per request."""
    facts = policy.facts()
    if facts.counted is None:
        facts.counted = request.method not in UNCOUNTED_METHODS and facts.policy.counted
    return facts.counted


def count_hit():
    """Count the hit, and a valid token's use, before the view runs, so that a hit count it
    reports includes itself; and read in the same write the other counters the route says
    its view reports (``Policy.reads``)."""
    if counts_as_hit():
        reads = policy.current().reads
        amounts, touched = _with_usage({"hits": 1})
        totals = _count(amounts, touched, HIT, reads(request) if reads else ())
        g.hit_count = totals["hits"]
        g.counted_totals = totals


def count_outcome(response):
    """After the view: the error of a counted request that ended with a 4xx or 5xx, whatever
    produced it; and the hit too, in the same write, of one refused before ``count_hit``."""
    counted = request.environ.get(COUNTED)
    failed = response.status_code >= 400
    if counted == HIT:
        if failed:
            _count({"errors": 1}, (), ERROR)
    elif counted is None and counts_as_hit():
        amounts = {"hits": 1, "errors": 1} if failed else {"hits": 1}
        _count(*_with_usage(amounts), ERROR if failed else HIT)
    return response


def count_unanswered():
    """Count a request whose answer escaped the app, which the edge answers with a 500: its
    hit when the hooks never counted it, and its error unless they counted one; in one write."""
    counted = request.environ.get(COUNTED)
    if counted in (ERROR, FAILED) or (counted is None and not counts_as_hit()):
        return
    if counted == HIT:
        storage.increment_counters({"errors": 1})
    else:
        storage.increment_counters(*_with_usage({"hits": 1, "errors": 1}))


def current_total(counter):
    """A counter's total as this request's own write left it, itself included, or as that
    write read it (``Policy.reads``); else the committed total, one more round trip."""
    counted = g.get("counted_totals")
    if counted is not None and counter in counted:
        return counted[counter]
    return storage.read_counter(counter)


def current_hits():
    """The hit count this request saw, itself included; for a request that is not a hit (a
    HEAD asking what a GET would answer), the committed total."""
    if "hit_count" in g:
        return g.hit_count
    return storage.read_counter("hits")


def init_app(app):
    """Count the outcome last: the factory calls this before any other part registers an
    after-request hook, so that it sees the final status. The hit's hook goes after the rate
    limiter's (``register_hit_hook``), so that a refused request is counted in one write."""
    app.after_request(count_outcome)


def register_hit_hook(app):
    """The hit's hook, registered once the rate limiter's hooks are (the request path in
    ``api/__init__.py``)."""
    app.before_request(count_hit)
