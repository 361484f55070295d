"""Rate limits: per address, per token, for failed tokens; their 429s, headers and costs."""

import os
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from api.speedups.limiter import FixedWindowMemory

from . import servers

LIMIT = 3
LIMITED = {
    "RATELIMIT_PER_CLIENT": f"{LIMIT} per minute",
    "RATELIMIT_PER_TOKEN": f"{LIMIT * 2} per minute",
    "RATELIMIT_FAILED_TOKENS": "2 per minute",
}


def from_address(address):
    return {"environ_base": {"REMOTE_ADDR": address}}


@pytest.fixture
def limited(make_app):
    return make_app(**LIMITED).test_client()


def statuses(client, n, url="/api/pizza", **kwargs):
    return [client.get(url, **kwargs).status_code for _ in range(n)]


def test_client_budget_then_429_in_the_envelope(limited):
    assert statuses(limited, LIMIT) == [200] * LIMIT
    response = limited.get("/api/pizza")
    assert response.status_code == 429
    assert response.get_json() == {
        "type": "Error",
        "content": "Too many requests; retry after the seconds in Retry-After",
    }
    retry_after = int(response.headers["Retry-After"])
    assert 0 < retry_after <= 60
    assert response.headers["RateLimit-Limit"] == str(LIMIT)
    assert response.headers["RateLimit-Remaining"] == "0"
    assert response.headers["RateLimit-Reset"] == str(retry_after)
    assert response.headers["RateLimit-Policy"] == f"{LIMIT};w=60"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_429_as_problem_details_and_as_a_page(limited):
    statuses(limited, LIMIT)
    problem = limited.get("/api/pizza", headers={"Accept": "application/problem+json"})
    assert problem.status_code == 429
    assert problem.mimetype == "application/problem+json"
    assert problem.get_json()["status"] == 429
    assert "Retry-After" in problem.headers
    page = limited.get("/docs", headers={"Accept": "text/html,*/*;q=0.8"})
    assert page.status_code == 429
    assert page.mimetype == "text/html"
    assert "Retry-After" in page.headers


def test_headers_count_down_on_every_limited_response(limited):
    remaining = [int(limited.get("/api/pizza").headers["RateLimit-Remaining"]) for _ in range(3)]
    assert remaining == [LIMIT - 1, LIMIT - 2, LIMIT - 3]


def test_headers_only_on_429_when_configured(make_app):
    client = make_app(**LIMITED, RATELIMIT_HEADERS_ALWAYS=False).test_client()
    assert all("RateLimit-Limit" not in client.get("/api/pizza").headers for _ in range(LIMIT))
    assert "RateLimit-Limit" in client.get("/api/pizza").headers


def test_the_budget_is_per_address_and_shared_by_every_route(limited):
    # Pages, API routes and unrouted paths all cost a hit, so all draw on one budget.
    assert [limited.get(path).status_code for path in ("/", "/api/pizza", "/nowhere")] == [
        200,
        200,
        404,
    ]
    assert limited.get("/api/a/b").status_code == 429
    assert limited.put("/api").status_code == 429
    assert limited.get("/api/pizza", **from_address("192.0.2.7")).status_code == 200


def test_health_checks_preflights_and_static_files_are_never_limited(limited):
    statuses(limited, LIMIT + 1)
    assert limited.get("/healthz").status_code == 200
    assert limited.options("/api").status_code == 200
    with limited.get("/static/style.css") as response:
        assert response.status_code == 200


def test_token_holders_get_their_own_larger_budget(limited, auth_headers):
    statuses(limited, LIMIT + 1)  # the address is spent
    with_token = statuses(limited, LIMIT * 2 + 1, headers=auth_headers)
    assert with_token == [200] * (LIMIT * 2) + [429]
    # The token's budget follows the token to any address.
    assert statuses(limited, 1, headers=auth_headers, **from_address("192.0.2.8")) == [429]


@pytest.mark.parametrize("how", ["header", "query"])
def test_failed_token_attempts_are_stopped_early(make_app, token, how):
    limited = make_app(**{**LIMITED, "RATELIMIT_PER_CLIENT": "100 per minute"}).test_client()

    def attempt(secret, address="198.51.100.1"):
        if how == "header":
            kwargs = {"headers": {"Authorization": f"Bearer {secret}"}}
        else:
            kwargs = {"query_string": {"token": secret}}
        return limited.get("/api/errors", **kwargs, **from_address(address))

    assert [attempt(f"rapi_guess{i}").status_code for i in range(2)] == [401, 401]
    blocked = attempt("rapi_guess3")
    assert blocked.status_code == 429
    assert "failed token attempts" in blocked.get_json()["content"]
    assert "Retry-After" in blocked.headers
    # A valid token from the guessing address still works: only rejected tokens are stopped,
    # so no one can lock a token holder out by guessing from the same address.
    assert attempt(token).status_code == 200
    assert attempt("rapi_guess4").status_code == 429
    # Other addresses, and requests without a token, are not held back.
    assert attempt(token, "198.51.100.2").status_code == 200
    assert limited.get("/api/pizza", **from_address("198.51.100.1")).status_code == 200


def test_valid_tokens_never_spend_the_failed_attempts_budget(limited, auth_headers):
    assert statuses(limited, LIMIT * 2, "/api/errors", headers=auth_headers) == [200] * (LIMIT * 2)


def test_every_429_is_a_counted_hit_and_error(limited, hits):
    before_hits, before_errors = hits(), hits("errors")
    assert statuses(limited, LIMIT + 4) == [200] * LIMIT + [429] * 4
    assert hits() == before_hits + LIMIT + 4
    assert hits("errors") == before_errors + 4


def test_a_429_costs_one_write(make_app):
    """A refused client costs the service less than a served one: its hit and its error are
    committed together, in one transaction."""
    app = make_app(**LIMITED)
    commits = app.extensions["counter_commits"]
    written = []
    commit = commits._commit
    commits._commit = lambda amounts, *rest: written.append(dict(amounts)) or commit(amounts, *rest)
    client = app.test_client()
    assert statuses(client, LIMIT) == [200] * LIMIT
    written.clear()
    assert statuses(client, 2) == [429, 429]
    assert written == [{"hits": 1, "errors": 1}] * 2


def test_limits_are_off_when_disabled(make_app):
    app = make_app(**LIMITED, RATELIMIT_ENABLED=False)
    client = app.test_client()
    response = client.get("/api/pizza")
    assert "RateLimit-Limit" not in response.headers
    assert statuses(client, LIMIT * 3) == [200] * (LIMIT * 3)


def test_limits_come_from_the_environment(monkeypatch, make_app):
    monkeypatch.setenv("RATELIMIT_PER_CLIENT", "2 per hour")
    monkeypatch.setenv("RATELIMIT_ENABLED", "true")
    client = make_app().test_client()
    response = client.get("/api/pizza")
    assert response.headers["RateLimit-Limit"] == "2"
    assert response.headers["RateLimit-Policy"] == "2;w=3600"


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("/api/errors", "valid"),
        ("/api/errors", "rapi_wrong"),
        ("/api/pizza", "valid"),
        ("/api/pizza", None),
        ("/docs", "valid"),
    ],
)
def test_limiting_adds_no_database_round_trip(make_app, statements, token, url, secret):
    headers = {"Authorization": f"Bearer {token if secret == 'valid' else secret}"}
    headers = headers if secret else {}
    free = make_app(RATELIMIT_ENABLED=False).test_client()
    limited = make_app().test_client()
    # Warm both up: the first use of a token also records when it was last used.
    free.get(url, headers=headers)
    limited.get(url, headers=headers)

    runs = {}
    for name, client in (("free", free), ("limited", limited)):
        statements.clear()
        client.get(url, headers=headers)
        # An app that has seen no write for half a second reads the token version first
        # (api/storage/token_cache.py), whether it limits or not: not the limiter's.
        runs[name] = [s for s in statements if "token_version" not in s]
    assert runs["limited"] == runs["free"]
    assert sum("FROM tokens" in statement for statement in runs["limited"]) <= 1


def test_unreachable_storage_falls_back_to_per_process_limits(make_app):
    dead = f"redis://127.0.0.1:{servers.free_port()}/0"
    client = make_app(**LIMITED, RATELIMIT_STORAGE_URI=dead).test_client()
    assert statuses(client, LIMIT + 1) == [200] * LIMIT + [429]


@pytest.fixture
def silent_redis():
    """A server that accepts connections, as a stalled Redis does, and never replies."""
    listener = socket.create_server(("127.0.0.1", 0))
    held = []

    def accept():
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            held.append(connection)

    threading.Thread(target=accept, daemon=True).start()
    yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    listener.close()
    for connection in held:
        connection.close()


def test_a_storage_that_never_replies_falls_back_within_its_timeout(make_app, silent_redis):
    client = make_app(
        **LIMITED, RATELIMIT_STORAGE_URI=silent_redis, RATELIMIT_STORAGE_TIMEOUT=0.2
    ).test_client()
    started = time.monotonic()
    assert statuses(client, LIMIT + 1) == [200] * LIMIT + [429]
    # One wait of the timeout, then the process counts in memory; the driver's default
    # would have held each request for seconds.
    assert time.monotonic() - started < 2


def test_token_reading_routes_are_every_view_that_checks_a_token(make_app):
    policies = make_app(**LIMITED).extensions["policies"].by_endpoint
    endpoints = {endpoint for endpoint, found in policies.items() if found.reads_token}
    assert endpoints == {"data_query", "typed_data", "teapot", "stats", "metrics", "pages.stats"}


def test_failed_token_attempts_on_the_stats_page_spend_the_same_budget(make_app):
    limited = make_app(**{**LIMITED, "RATELIMIT_PER_CLIENT": "100 per minute"}).test_client()
    guesses = [
        limited.get("/stats", query_string={"token": f"rapi_guess{i}"}).status_code
        for i in range(3)
    ]
    assert guesses == [401, 401, 429]
    # The budget is the address's, wherever it guessed: the API refuses it as well.
    assert limited.get("/api/errors", query_string={"token": "rapi_guess4"}).status_code == 429


# Server tests: real worker processes, each with its own memory.

SHARED_LIMIT = 10
REQUESTS = 200


@pytest.fixture
def redis_url():
    """The real Redis, with every key a test made under its own prefix removed afterwards."""
    url = os.environ.get("TEST_REDIS_URL")
    if not url:
        pytest.skip("TEST_REDIS_URL is not set; .ci/run points it at the local Redis")
    prefix = f"test-{uuid.uuid4().hex}"
    yield url, prefix
    client = redis.Redis.from_url(url)
    for key in client.scan_iter(match=f"*{prefix}*"):
        client.delete(key)
    client.close()


def answer_of(url):
    """(status, RateLimit-Remaining) of one GET, on a connection of its own."""
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.headers["RateLimit-Remaining"]
    except urllib.error.HTTPError as e:
        return e.code, e.headers["RateLimit-Remaining"]


def hammer(server):
    """REQUESTS concurrent requests, each on a new connection, which the kernel spreads over
    both workers; how many were answered 200."""
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: answer_of(server.url + "/api/pizza"), range(REQUESTS)))
    statuses = Counter(status for status, _ in answers)
    assert set(statuses) == {200, 429}
    return statuses[200]


def limited_server(start_server, database, storage_uri, prefix=""):
    return start_server(
        database,
        WEB_CONCURRENCY=2,
        RATELIMIT_ENABLED="true",
        RATELIMIT_STORAGE_URI=storage_uri,
        RATELIMIT_KEY_PREFIX=prefix,
        RATELIMIT_PER_CLIENT=f"{SHARED_LIMIT} per hour",
    )


@pytest.mark.server
@pytest.mark.redis
def test_two_workers_share_one_limit_in_redis(start_server, sqlite_url, redis_url):
    url, prefix = redis_url
    server = limited_server(start_server, sqlite_url, url, prefix)
    # One budget for both workers.
    assert hammer(server) == SHARED_LIMIT


@pytest.mark.server
def test_with_memory_storage_each_worker_counts_alone(start_server, sqlite_url):
    # The control for the Redis test: the same traffic reaches both workers, and each spends
    # a budget of its own.
    server = limited_server(start_server, sqlite_url, "memory://")
    assert hammer(server) == 2 * SHARED_LIMIT


@pytest.mark.server
def test_server_tests_run_without_limits(start_server, sqlite_url):
    server = start_server(sqlite_url)
    assert [answer_of(server.url + "/api/pizza")[0] for _ in range(150)] == [200] * 150


# The failed-token budget under concurrency: exact, however many guesses arrive at once.

GUESSES = 32
FAILED_TOKEN_LIMIT = 10
GUESSING = {
    "RATELIMIT_ENABLED": "true",
    "RATELIMIT_PER_CLIENT": "1000 per minute",
    "RATELIMIT_FAILED_TOKENS": f"{FAILED_TOKEN_LIMIT} per minute",
}


def all_at_once(send, n=GUESSES):
    """The statuses of n calls of send(i), released together from n threads."""
    start = threading.Barrier(n)

    def guess(i):
        start.wait()
        return send(i)

    with ThreadPoolExecutor(n) as pool:
        return Counter(pool.map(guess, range(n)))


def test_concurrent_wrong_tokens_spend_the_budget_exactly_in_one_process(make_app):
    app = make_app(**GUESSING)

    def send(i):
        # A client per thread, all through the app's one WSGI callable.
        return app.test_client().get(f"/api/errors?token=rapi_guess{i}").status_code

    assert all_at_once(send) == {401: FAILED_TOKEN_LIMIT, 429: GUESSES - FAILED_TOKEN_LIMIT}


def guess_at_server(server):
    def send(i):
        return answer_of(f"{server.url}/api/errors?token=rapi_guess{i}")[0]

    return send


@pytest.mark.server
def test_concurrent_wrong_tokens_spend_the_budget_exactly_in_one_worker(start_server, sqlite_url):
    server = start_server(sqlite_url, WEB_CONCURRENCY=1, **GUESSING)
    statuses = all_at_once(guess_at_server(server))
    assert statuses == {401: FAILED_TOKEN_LIMIT, 429: GUESSES - FAILED_TOKEN_LIMIT}


@pytest.mark.server
@pytest.mark.redis
def test_concurrent_wrong_tokens_spend_one_budget_exactly_across_workers_in_redis(
    start_server, sqlite_url, redis_url
):
    url, prefix = redis_url
    server = start_server(
        sqlite_url,
        WEB_CONCURRENCY=2,
        RATELIMIT_STORAGE_URI=url,
        RATELIMIT_KEY_PREFIX=prefix,
        **GUESSING,
    )
    statuses = all_at_once(guess_at_server(server))
    assert statuses == {401: FAILED_TOKEN_LIMIT, 429: GUESSES - FAILED_TOKEN_LIMIT}


# Bodies are checked after the budget: a spent client gets 429 whatever its body.

FORM = b"Content-Type: application/x-www-form-urlencoded\r\n"
BODIES = {
    411: b"POST /api HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
    + FORM
    + b"\r\na\r\ndata=pizza\r\n0\r\n\r\n",
    413: b"POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n"
    + FORM
    + b"\r\ndata="
    + b"p" * 195,
}


@pytest.mark.server
def test_a_spent_client_gets_429_for_chunked_and_oversized_bodies(start_server, sqlite_url):
    server = start_server(
        sqlite_url,
        WEB_CONCURRENCY=1,
        RATELIMIT_ENABLED="true",
        RATELIMIT_PER_CLIENT="4 per minute",
        MAX_CONTENT_LENGTH=100,
    )

    def status(raw):
        return servers.parse_answer(servers.exchange(server.port, raw))[0]

    order = [411, 413, 411, 413]
    assert [status(BODIES[refused]) for refused in order] == order
    assert [status(BODIES[refused]) for refused in order] == [429] * 4


# The memory store: bounded however many addresses come.


def test_memory_windows_stay_bounded_whatever_the_number_of_addresses(make_app, monkeypatch):
    monkeypatch.setattr(FixedWindowMemory, "MAX_WINDOWS", 200)
    app = make_app(**LIMITED)
    client = app.test_client()
    store = next(iter(app.extensions["limiter"])).storage
    assert isinstance(store, FixedWindowMemory)
    # Each address's wrong token opens its failed-token windows (a minute and, by default,
    # a day) besides its request window: three per address without the bound.
    for i in range(300):
        address = f"10.0.{i // 250}.{i % 250}"
        answer = client.get(
            "/api/errors", query_string={"token": "rapi_wrong"}, **from_address(address)
        )
        assert answer.status_code == 401
    assert len(store._windows) <= 200
    # The newest addresses keep their exact budgets.
    newest = from_address("10.0.1.49")
    assert [client.get("/api/pizza", **newest).status_code for _ in range(LIMIT)] == [200] * (
        LIMIT - 1
    ) + [429]


def test_memory_windows_that_ended_are_retired_without_walking_every_key():
    store = FixedWindowMemory()
    for i in range(1000):
        store.incr(f"short/{i}", 1)
    store.incr("long", 3600)
    assert len(store._windows) == 1001
    # Two seconds on, the short windows have ended: each new window retires a few of them,
    # rather than one request walking all of them.
    for queue in store._ending.values():
        for n, (_expiry, key, window) in enumerate(queue):
            window[1] -= 2
            queue[n] = (window[1], key, window)
    for i in range(10):
        store.incr(f"new/{i}", 60)
    assert len(store._windows) == 1001 + 10 - 10 * FixedWindowMemory.RETIRE_AT_ONCE
    for i in range(10, 200):
        store.incr(f"new/{i}", 60)
    assert len(store._windows) == 1 + 200
    assert store.get("long") == 1
