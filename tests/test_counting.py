"""Which requests are hits and errors, whatever path produced the answer."""

import pytest
from flask import abort


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("get", "/api?data=1", 200),
        ("get", "/", 200),
        ("get", "/docs", 200),
        ("post", "/api", 400),  # no data: raised inside a Resource
        ("get", "/api/errors", 401),  # Flask-HTTPAuth's error path
        ("get", "/api/nothing", 404),  # abort inside a Resource
        ("get", "/nowhere", 404),  # Werkzeug routing, a page
        ("get", "/api/a/b", 404),  # Werkzeug routing, under /api
        ("put", "/api", 405),  # routing's method check
        ("get", "/api/teapot", 418),
    ],
)
def test_counted_requests(client, hits, method, path, status):
    before_hits, before_errors = hits(), hits("errors")
    assert getattr(client, method)(path).status_code == status
    assert hits() == before_hits + 1
    assert hits("errors") == before_errors + (1 if status >= 400 else 0)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/healthz"),
        ("get", "/static/style.css"),
        ("get", "/static/missing.css"),
        ("head", "/api?data=1"),
        ("head", "/nowhere"),
        ("options", "/api"),
    ],
)
def test_uncounted_requests(client, hits, method, path):
    before_hits, before_errors = hits(), hits("errors")
    getattr(client, method)(path).close()
    assert (hits(), hits("errors")) == (before_hits, before_errors)


def test_exception_in_a_view_is_counted(make_app, hits):
    app = make_app()

    @app.get("/explode")
    def explode():
        raise RuntimeError("boom")

    before_hits, before_errors = hits(), hits("errors")
    assert app.test_client().get("/explode").status_code == 500
    assert (hits(), hits("errors")) == (before_hits + 1, before_errors + 1)


def test_abort_in_a_page_is_counted(make_app, hits):
    app = make_app()

    @app.get("/forbidden")
    def forbidden():
        abort(403)

    before_errors = hits("errors")
    response = app.test_client().get("/forbidden")
    assert response.status_code == 403
    assert b"403" in response.data
    assert hits("errors") == before_errors + 1


def test_counts_are_shared_by_apps_on_one_database(make_app, hits):
    first, second = make_app().test_client(), make_app().test_client()
    a = first.get("/api/hits").get_json()["content"]
    b = second.get("/api/hits").get_json()["content"]
    c = first.get("/api/hits").get_json()["content"]
    assert (b, c) == (a + 1, a + 2)
    assert hits() == a + 2


# Every GET the service answers, asked with HEAD: monitors and link checkers send these.
HEAD_PATHS = [
    "/",
    "/docs",
    "/stats",
    "/api?data=1",
    "/api?data=hits",
    "/api/hits",
    "/api/pizza",
    "/api/stats",
    "/api/openapi.json",
    "/api/errors",
    "/api/nothing",
    "/api/teapot",
    "/healthz",
    "/nowhere",
]


@pytest.mark.parametrize("path", HEAD_PATHS)
def test_head_answers_as_get_would_without_a_body_or_a_hit(client, hits, path):
    before_hits, before_errors = hits(), hits("errors")
    head = client.head(path)
    assert head.data == b""
    assert (hits(), hits("errors")) == (before_hits, before_errors)
    get = client.get(path)
    assert head.status_code == get.status_code
    assert head.mimetype == get.mimetype


def test_head_reads_the_hit_count_without_adding_to_it(client, hits):
    client.get("/api?data=1")
    total = hits()
    assert client.head("/api?data=hits").status_code == 200
    # The same count a GET reports, less the GET itself.
    assert client.get("/api?data=hits").get_json()["content"] == total + 1


def test_hooks_run_in_the_order_of_the_request_path(make_app):
    """The order api/__init__.py writes down: a reordering must fail here, loudly."""
    app = make_app(RATELIMIT_ENABLED=True)

    def names(hooks):
        return [getattr(hook, "func", hook).__name__ for hook in hooks]

    assert names(app.before_request_funcs[None]) == [
        "check_sent_token",
        "_check_request_limit",
        "count_hit",
        "check_body",
    ]
    # Flask runs after-request hooks last registered first.
    assert names(reversed(app.after_request_funcs[None])) == [
        "secure_response",
        "__inject_headers",
        "add_rate_limit_headers",
        "count_outcome",
        "note_route",
    ]


def test_without_rate_limits_the_rest_of_the_path_keeps_its_order(make_app):
    app = make_app(RATELIMIT_ENABLED=False)
    assert [hook.__name__ for hook in app.before_request_funcs[None]] == [
        "check_sent_token",
        "count_hit",
        "check_body",
    ]


def test_an_oversized_body_draws_on_the_rate_limit_like_any_request(make_app):
    client = make_app(RATELIMIT_PER_CLIENT="3 per minute", MAX_CONTENT_LENGTH=100).test_client()
    statuses = [client.post("/api", data={"data": "p" * 200}).status_code for _ in range(2)]
    statuses += [client.get("/api?data=1").status_code for _ in range(3)]
    assert statuses == [413, 413, 200, 429, 429]
