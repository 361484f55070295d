"""Security headers, no-store, HSTS, CORS, the body cap, ProxyFix and problem details."""

import io
import urllib.error
import urllib.request

import pytest

from api import errors, security

# One of every kind of answer: data, errors from each layer, pages, static files, a preflight.
EVERY_KIND_OF_RESPONSE = [
    ("get", "/api/pizza", {}),
    ("get", "/api?data=nothing", {}),
    ("get", "/api/errors", {}),
    ("put", "/api", {}),
    ("get", "/api/a/b", {}),
    ("get", "/api/teapot", {}),
    ("post", "/api", {"data": "x" * 70_000, "content_type": "text/plain"}),
    ("get", "/", {}),
    ("get", "/docs", {}),
    ("get", "/nowhere", {}),
    ("get", "/healthz", {}),
    ("get", "/static/style.css", {}),
    ("options", "/api", {"headers": {"Origin": "https://example.org"}}),
]


@pytest.mark.parametrize(("method", "path", "kwargs"), EVERY_KIND_OF_RESPONSE)
def test_every_response_carries_the_security_headers(client, method, path, kwargs):
    with getattr(client, method)(path, **kwargs) as response:
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.headers["X-Frame-Options"] == "DENY"
        csp = response.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp
        # Pages get the page policy; everything under /api, a preflight's empty answer too,
        # gets the one that allows nothing.
        if response.mimetype == "text/html" and not path.startswith("/api"):
            assert csp == security.PAGE_CSP
        else:
            assert csp == security.DATA_CSP
        assert "Strict-Transport-Security" not in response.headers


def test_data_csp_allows_nothing():
    directives = dict(d.strip().split(" ", 1) for d in security.DATA_CSP.split(";"))
    assert directives == {"default-src": "'none'", "frame-ancestors": "'none'"}


def test_page_csp_allows_only_the_app_itself():
    directives = dict(d.strip().split(" ", 1) for d in security.PAGE_CSP.split(";"))
    assert directives["default-src"] == "'self'"
    assert "'unsafe-inline'" not in security.PAGE_CSP
    assert "'unsafe-eval'" not in security.PAGE_CSP
    assert "*" not in security.PAGE_CSP
    assert "http" not in security.PAGE_CSP


@pytest.mark.parametrize("path", ["/", "/docs", "/nowhere"])
def test_pages_have_no_inline_script_or_style(client, path):
    html = client.get(path).get_data(as_text=True)
    assert "<script" not in html
    assert "<style" not in html
    assert " style=" not in html
    assert " on" + "click=" not in html


def test_hsts_over_https(client):
    response = client.get("/api/pizza", base_url="https://api.example.org")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


@pytest.mark.parametrize(
    ("request_kwargs", "stored"),
    [
        ({}, True),
        ({"headers": {"Authorization": "Bearer {token}"}}, False),
        ({"query_string": {"token": "{token}"}}, False),
        ({"headers": {"Authorization": "Bearer rapi_wrong"}}, False),
        ({"query_string": {"token": "rapi_wrong"}}, False),
    ],
    ids=["anonymous", "header", "query", "wrong-header", "wrong-query"],
)
@pytest.mark.parametrize("path", ["/api/errors", "/api/pizza", "/docs"])
def test_no_store_when_a_token_came(client, token, request_kwargs, stored, path):
    kwargs = {
        key: {k: v.format(token=token) for k, v in value.items()}
        for key, value in request_kwargs.items()
    }
    cache_control = client.get(path, **kwargs).headers.get("Cache-Control", "")
    assert ("no-store" not in cache_control) == stored


@pytest.mark.parametrize("origin", ["https://example.org", "http://localhost:3000"])
def test_cors_preflight_allows_the_authorization_header(client, origin, hits):
    before = hits()
    response = client.options(
        "/api/errors",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "authorization" in response.headers["Access-Control-Allow-Headers"].lower()
    assert "GET" in response.headers["Access-Control-Allow-Methods"]
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert hits() == before  # a preflight is not a hit


def test_cors_actual_request_exposes_the_rate_limit_headers(client, auth_headers):
    response = client.get("/api/errors", headers={"Origin": "https://x.test", **auth_headers})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    exposed = {h.strip() for h in response.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"Retry-After", "RateLimit-Remaining"} <= exposed


def test_cors_origins_from_config(make_app):
    client = make_app(CORS_ORIGINS=["https://good.example"]).test_client()
    good = client.get("/api/pizza", headers={"Origin": "https://good.example"})
    assert good.headers["Access-Control-Allow-Origin"] == "https://good.example"
    bad = client.get("/api/pizza", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in bad.headers


NAMED_ORIGINS = ["https://good.example", "https://other.example"]
PREFLIGHT = {
    "Access-Control-Request-Method": "GET",
    "Access-Control-Request-Headers": "authorization",
}

# Every kind of answer a page on another origin can get from /api: data, errors from each
# layer, a preflight; from an allowed origin, another one, and none.
CORS_ANSWERS = {
    "allowed origin": ("get", "/api/pizza", {"Origin": "https://good.example"}),
    "second allowed origin": ("get", "/api/pizza", {"Origin": "https://other.example"}),
    "disallowed origin": ("get", "/api/pizza", {"Origin": "https://evil.example"}),
    "no origin": ("get", "/api/pizza", {}),
    "an error": ("get", "/api/nothing", {"Origin": "https://good.example"}),
    "a 401": ("get", "/api/errors", {"Origin": "https://evil.example"}),
    "an unrouted path": ("get", "/api/a/b", {}),
    "preflight": ("options", "/api/errors", {"Origin": "https://good.example", **PREFLIGHT}),
    "disallowed preflight": (
        "options",
        "/api/errors",
        {"Origin": "https://evil.example", **PREFLIGHT},
    ),
    "preflight without origin": ("options", "/api/errors", {}),
}


@pytest.mark.parametrize(("method", "path", "headers"), CORS_ANSWERS.values(), ids=CORS_ANSWERS)
def test_with_named_origins_every_api_answer_varies_on_origin(make_app, method, path, headers):
    client = make_app(CORS_ORIGINS=NAMED_ORIGINS).test_client()
    response = getattr(client, method)(path, headers=headers)
    # The answer depends on Origin, so a cache must not hand one origin's to another.
    assert "Origin" in response.vary
    if "Origin" in headers:
        allowed = headers["Origin"] in NAMED_ORIGINS
        assert response.headers.get("Access-Control-Allow-Origin") == (
            headers["Origin"] if allowed else None
        )


@pytest.mark.parametrize(("method", "path", "headers"), CORS_ANSWERS.values(), ids=CORS_ANSWERS)
def test_the_wildcard_default_sends_star_and_needs_no_vary(client, method, path, headers):
    response = getattr(client, method)(path, headers=headers)
    assert "Origin" not in response.vary
    if headers.get("Origin") or method == "get":
        assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_cors_only_on_the_api(client):
    response = client.get("/docs", headers={"Origin": "https://example.org"})
    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize(
    "kwargs",
    [
        {"data": {"data": "x" * 70_000}},
        {"json": {"data": "x" * 70_000}},
        {"data": "x" * 70_000, "content_type": "application/octet-stream"},
    ],
    ids=["form", "json", "octets"],
)
@pytest.mark.parametrize("path", ["/api", "/api/pizza", "/nowhere"])
def test_bodies_over_the_limit_get_413(client, hits, kwargs, path):
    before = hits("errors")
    response = client.post(path, **kwargs)
    assert response.status_code == 413
    if path.startswith("/api"):
        assert response.get_json() == {
            "type": "Error",
            "content": "Request body too large; the limit is 65536 bytes",
        }
    assert hits("errors") == before + 1


def test_body_limit_is_configurable(make_app):
    client = make_app(MAX_CONTENT_LENGTH=100).test_client()
    assert client.post("/api", data={"data": "pizza"}).status_code == 200
    assert client.post("/api", data={"data": "p" * 200}).status_code == 413


@pytest.mark.parametrize("size", [10, 500])
def test_chunked_bodies_get_411_whatever_their_size(client, hits, size):
    # A server may hand over a chunked body the client cut off as if it were whole; only a
    # Content-Length lets the app tell, so chunked bodies are refused outright.
    before = hits(), hits("errors")
    response = client.post(
        "/api",
        input_stream=io.BytesIO(b'{"data": "' + b"p" * size + b'"}'),
        content_type="application/json",
        headers={"Transfer-Encoding": "chunked"},
        environ_base={"wsgi.input_terminated": True},
    )
    assert response.status_code == 411
    assert response.get_json() == {"type": "Error", "content": security.CHUNKED_REFUSED}
    assert (hits(), hits("errors")) == (before[0] + 1, before[1] + 1)


# Where requests come from.


def forwarded_for(address):
    return {"headers": {"X-Forwarded-For": address}}


def test_without_a_proxy_x_forwarded_for_is_ignored(make_app):
    client = make_app(RATELIMIT_PER_CLIENT="2 per minute").test_client()
    spoofed = [client.get("/api/pizza", **forwarded_for(f"203.0.113.{i}")) for i in range(3)]
    assert [r.status_code for r in spoofed] == [200, 200, 429]


def test_behind_one_proxy_the_limit_keys_on_the_real_client(make_app):
    client = make_app(RATELIMIT_PER_CLIENT="2 per minute", PROXY_FIX_X_FOR=1).test_client()
    # The router appends the address it saw; whatever the client wrote comes before it.
    one = [client.get("/api/pizza", **forwarded_for(f"1.1.1.1, 203.0.113.{i}")) for i in (1, 1)]
    assert [r.status_code for r in one] == [200, 200]
    assert client.get("/api/pizza", **forwarded_for("9.9.9.9, 203.0.113.1")).status_code == 429
    assert client.get("/api/pizza", **forwarded_for("1.1.1.1, 203.0.113.2")).status_code == 200


def test_x_forwarded_proto_is_trusted_only_behind_a_configured_proxy(make_app):
    https = {"headers": {"X-Forwarded-Proto": "https"}}
    alone = make_app().test_client().get("/api/pizza", **https)
    assert "Strict-Transport-Security" not in alone.headers
    behind = make_app(PROXY_FIX_X_PROTO=1).test_client().get("/api/pizza", **https)
    assert "Strict-Transport-Security" in behind.headers


def status_of(url, headers):
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers
    except urllib.error.HTTPError as e:
        return e.code, e.headers


@pytest.mark.server
@pytest.mark.parametrize(("hops", "expected"), [(0, [200, 200, 429, 429]), (1, [200] * 4)])
def test_real_server_keys_on_the_address_it_trusts(start_server, sqlite_url, hops, expected):
    server = start_server(
        sqlite_url,
        # One worker: with memory:// each worker keeps its own count.
        WEB_CONCURRENCY=1,
        RATELIMIT_ENABLED="true",
        RATELIMIT_PER_CLIENT="2 per minute",
        PROXY_FIX_X_FOR=hops,
        PROXY_FIX_X_PROTO=hops,
    )
    answers = [
        status_of(
            server.url + "/api/pizza",
            {"X-Forwarded-For": f"203.0.113.{i}", "X-Forwarded-Proto": "https"},
        )
        for i in range(4)
    ]
    assert [status for status, _ in answers] == expected
    assert all(("Strict-Transport-Security" in headers) == bool(hops) for _, headers in answers)


# Problem details.

PROBLEM = {"Accept": "application/problem+json"}


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("get", "/api", {}, 400),
        ("get", "/api/errors", {}, 401),
        ("get", "/api/nothing", {}, 404),
        ("put", "/api", {}, 405),
        ("post", "/api", {"data": "x" * 70_000, "content_type": "text/plain"}, 413),
        ("get", "/api/teapot", {}, 418),
        ("get", "/nowhere", {}, 404),
    ],
)
def test_problem_details_for_clients_that_ask(client, hits, method, path, kwargs, status):
    before = hits("errors")
    response = getattr(client, method)(path, headers=PROBLEM, **kwargs)
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert set(body) == {"type", "title", "status", "detail"}
    assert body["status"] == status
    assert body["type"] == "about:blank"
    assert body["title"] == errors.HTTP_STATUS_CODES[status]
    assert body["detail"]
    assert "Accept" in response.headers["Vary"]
    assert hits("errors") == before + 1


def test_problem_details_say_what_the_envelope_says(client):
    envelope = client.get("/api?data=nothing").get_json()
    problem = client.get("/api?data=nothing", headers=PROBLEM).get_json()
    assert problem["detail"] == envelope["content"] == "Data specified does not exist"


def test_problem_details_keep_the_headers(client):
    response = client.get("/api/errors", headers=PROBLEM)
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="api"'


@pytest.mark.parametrize(
    ("accept", "path", "mimetype"),
    [
        (
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            "/nowhere",
            "text/html",
        ),
        (
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            "/api/x",
            "application/json",
        ),
        ("*/*", "/api/nothing", "application/json"),
        ("application/json", "/api/nothing", "application/json"),
        ("application/problem+json;q=0", "/api/nothing", "application/json"),
        (
            "application/json, application/problem+json;q=0.5",
            "/api/nothing",
            "application/problem+json",
        ),
    ],
)
def test_one_function_picks_the_shape(client, accept, path, mimetype):
    response = client.get(path, headers={"Accept": accept})
    assert response.status_code == 404
    assert response.mimetype == mimetype


def test_every_error_status_has_a_message_and_a_description():
    assert {400, 401, 404, 405, 408, 411, 413, 414, 429, 431, 500, 503} <= set(errors.STATUSES)
    for status, known in errors.STATUSES.items():
        assert 400 <= status < 600
        assert known.message and known.description
        assert errors.standard_message(status) == known.message


def test_other_origins_may_revalidate_the_openapi_document(client):
    """A page on another origin can read the document's validators and send them back."""
    preflight = client.options(
        "/api/openapi.json",
        headers={
            "Origin": "https://tools.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "if-none-match",
        },
    )
    assert "if-none-match" in preflight.headers["Access-Control-Allow-Headers"].lower()
    first = client.get("/api/openapi.json", headers={"Origin": "https://tools.example"})
    exposed = first.headers["Access-Control-Expose-Headers"].lower()
    assert "etag" in exposed and "last-modified" in exposed
    again = client.get(
        "/api/openapi.json",
        headers={"Origin": "https://tools.example", "If-None-Match": first.headers["ETag"]},
    )
    assert again.status_code == 304
    assert again.headers["Access-Control-Allow-Origin"] == "*"
