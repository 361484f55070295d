"""Memory stays flat under sustained load: nothing a request leaves behind outlives it.

Each kind of request is answered ten thousand times through the app's WSGI callable, every
part of the service on (the limiter, the access log's masking, the token check), and the
memory blocks still allocated afterwards are counted (``sys.getallocatedblocks``, which costs
nothing while requests run, unlike tracing). A cache that grows per request (say one keyed by
something made anew for each request) keeps at least one block per request; bounded caches
fill during the warm-up and add nothing after it.
"""

import gc
import io
import sys

import pytest

from bench.cost import environ

from .conftest import mint

WARM_UP = 500
REQUESTS = 10_000
# Blocks all the requests together may leave allocated: a leak keeps at least one per request
# (the Resource that leaked before kept several), while noise (a connection's statement cache,
# a thread's state) is a few dozen.
BOUND = REQUESTS // 20


def answer(app, base, count):
    """Answer ``count`` copies of one request, reading each body as a server would."""
    statuses = set()

    def start_response(status, _headers, _exc_info=None):
        statuses.add(status[:3])

    for _ in range(count):
        body = app(dict(base, **{"wsgi.input": io.BytesIO()}), start_response)
        b"".join(body)
        if hasattr(body, "close"):
            body.close()
    return statuses


@pytest.fixture
def loaded_app(make_app):
    """The app as deployed: rate limits on (budgets out of reach), the access log on."""
    app = make_app(
        RATELIMIT_ENABLED=True,
        RATELIMIT_PER_CLIENT="1000000 per minute",
        RATELIMIT_PER_TOKEN="1000000 per minute",
        ACCESS_LOG=True,
    )
    # The access line is built and masked as in production, and written nowhere.
    app.wsgi_app.access_log.write = lambda _line: None
    return app


@pytest.mark.parametrize(
    ("kind", "path", "query", "status"),
    [
        ("public", "/api/pizza", "", "200"),
        ("token", "/api", "data=errors", "200"),
        ("page", "/", "", "200"),
        ("error", "/api/nothing", "", "404"),
    ],
)
def test_memory_is_flat_under_load(loaded_app, kind, path, query, status):
    headers = {}
    if kind == "token":
        headers["HTTP_AUTHORIZATION"] = f"Bearer {mint(loaded_app, 'soak')}"
    base = environ(path, query, headers)
    assert answer(loaded_app, base, WARM_UP) == {status}
    gc.collect()
    before = sys.getallocatedblocks()
    answer(loaded_app, base, REQUESTS)
    gc.collect()
    retained = sys.getallocatedblocks() - before
    assert retained < BOUND, f"{retained} more blocks allocated after {REQUESTS} {kind} requests"
