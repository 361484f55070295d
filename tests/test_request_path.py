"""One pass per request: each fact about a request is worked out once, whichever hooks ask.

A profiler counts, for a whole request through the app's WSGI callable (rate limits on), how
often each deciding function ran and how often each module of ``api/`` was entered; the
request-path docstring in ``api/__init__.py`` states both.
"""

import sys
from collections import Counter
from pathlib import Path

import pytest

from api import auth, policy, token_hashing
from api.storage import token_store
from bench.cost import environ

from .conftest import mint

API = str(Path(policy.__file__).parent) + "/"

# The functions that work each fact out, and must run once per request at most.
DECIDING = {
    policy._route_policy: "the route's policy",
    auth._carries_token: "whether a token was sent",
    token_hashing.hash_token: "the token's hash",
    token_store.look_up_token: "the token's lookup",
}
# Entries into api/'s modules for one request, as the request-path docstring states them: 91
# for a public request, 130 for a wrong token's 401, which logs a line; most are Flask,
# Flask-Limiter and logging calling this service's hooks, callbacks and filters.
MOST_ENTRIES = 130


def traced(app, path, query, headers):
    """Answer one request under a profiler: calls per function, entries per module."""
    calls, entries = Counter(), Counter()

    def profile(frame, event, _arg):
        if event != "call":
            return
        code = frame.f_code
        if not code.co_filename.startswith(API):
            return
        calls[code] += 1
        caller = frame.f_back.f_code.co_filename if frame.f_back else ""
        if caller != code.co_filename:
            entries[code.co_filename[len(API) :]] += 1

    request = environ(path, query, headers)
    statuses = []
    sys.setprofile(profile)
    try:
        body = app(request, lambda status, _headers, _exc=None: statuses.append(status))
        b"".join(body)
    finally:
        sys.setprofile(None)
    return statuses[0], calls, entries


@pytest.mark.parametrize(
    ("path", "query", "with_token", "status", "most_entries"),
    [
        ("/api", "data=hits", False, "200 OK", MOST_ENTRIES),
        ("/api", "data=errors", True, "200 OK", MOST_ENTRIES),
        ("/api", "data=errors&token=rapi_wrong", False, "401 UNAUTHORIZED", MOST_ENTRIES),
        # A page's drawing enters its module once a bar: only its facts are counted.
        ("/stats", "", True, "200 OK", None),
    ],
)
def test_each_fact_is_worked_out_once(make_app, path, query, with_token, status, most_entries):
    app = make_app(RATELIMIT_ENABLED=True)
    headers = {"HTTP_AUTHORIZATION": f"Bearer {mint(app, 'traced')}"} if with_token else {}
    traced(app, path, query, headers)  # warm: the first request builds what is kept
    answered, calls, entries = traced(app, path, query, headers)
    assert answered == status
    for function, fact in DECIDING.items():
        assert calls[function.__code__] <= 1, f"{fact} was worked out {calls[function.__code__]}x"
    if most_entries is not None:
        assert sum(entries.values()) <= most_entries, entries
