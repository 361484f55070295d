"""/docs and /api/openapi.json: built once per app, and answered 304 to a client that holds
the current copy, through every hook a 200 goes through (api/openapi/rendered.py)."""

import html
import socket
from datetime import timedelta

import pytest
from flask import template_rendered
from werkzeug.http import http_date, parse_date

from api.resources import spec as spec_resource

from . import servers, spec_check

PATHS = ["/docs", "/api/openapi.json"]


@pytest.fixture
def rendered_templates(app):
    """The names of the templates the app renders while the test runs, from Flask's signal."""
    names = []

    def record(sender, template, context, **extra):
        names.append(template.name)

    with template_rendered.connected_to(record, app):
        yield names


@pytest.mark.parametrize("path", PATHS)
def test_answers_carry_a_strong_etag_and_a_last_modified(client, path):
    response = client.get(path)
    assert response.status_code == 200
    etag, weak = response.get_etag()
    assert etag and not weak
    assert parse_date(response.headers["Last-Modified"]) is not None
    # A cache may keep it, but must ask again before it serves it.
    assert response.headers["Cache-Control"] == "no-cache"


@pytest.mark.parametrize("path", PATHS)
def test_the_current_etag_gets_304_with_no_body_and_every_hook_s_headers(client, path):
    first = client.get(path)
    again = client.get(path, headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304
    assert again.data == b""
    assert "Content-Length" not in again.headers and "Content-Type" not in again.headers
    assert again.headers["ETag"] == first.headers["ETag"]
    # The after-request hooks ran: the security headers are the 200's, the page's for the page.
    for name in ("X-Content-Type-Options", "Content-Security-Policy", "Cache-Control"):
        assert again.headers[name] == first.headers[name], name
    assert "RateLimit-Remaining" in again.headers


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "condition",
    [
        lambda etag, date: {"If-None-Match": f"W/{etag}"},
        lambda etag, date: {"If-None-Match": f'"stale", {etag}'},
        lambda etag, date: {"If-None-Match": "*"},
        lambda etag, date: {"If-None-Match": etag, "If-Modified-Since": "yesterday"},
    ],
    ids=["weak", "one-of-several", "any", "etag-beside-a-bad-date"],
)
def test_a_client_that_holds_the_current_copy_gets_304(client, path, condition):
    first = client.get(path)
    headers = condition(first.headers["ETag"], first.headers["Last-Modified"])
    assert client.get(path, headers=headers).status_code == 304


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "condition",
    [
        lambda etag, date: {"If-None-Match": '"not-the-etag"'},
        # If-Modified-Since is not honoured: a newer deploy's worker may have built its copy
        # before an old one's did, so a date cannot say which copy a client holds.
        lambda etag, date: {"If-Modified-Since": date},
        lambda etag, date: {"If-Modified-Since": http_date(parse_date(date) + timedelta(1))},
        lambda etag, date: {"If-Modified-Since": "yesterday"},
        lambda etag, date: {"If-None-Match": '"not-the-etag"', "If-Modified-Since": date},
        # If-Match is not honoured: the whole answer, never a 412 with the document in it.
        lambda etag, date: {"If-Match": '"not-the-etag"'},
    ],
    ids=[
        "other-etag",
        "modified-since-then",
        "modified-since-later",
        "bad-date",
        "etag-over-date",
        "if-match",
    ],
)
def test_a_client_without_the_current_copy_gets_all_of_it(client, path, condition):
    first = client.get(path)
    headers = condition(first.headers["ETag"], first.headers["Last-Modified"])
    again = client.get(path, headers=headers)
    assert again.status_code == 200
    assert again.data == first.data


def test_the_document_s_304_is_the_one_the_spec_declares(app, client):
    etag = client.get("/api/openapi.json").headers["ETag"]
    answer = client.get("/api/openapi.json", headers={"If-None-Match": etag})
    # The test client's own check reads only JSON answers; a 304 has no body to type.
    checker = spec_check.SpecCheck(app.extensions["openapi"])
    request = spec_check.SentRequest("GET", "http://localhost/api/openapi.json")
    response = spec_check.ReceivedResponse(304, answer.headers, answer.data)
    assert list(checker.openapi.iter_response_errors(request, response)) == []


@pytest.mark.parametrize("path", PATHS)
def test_a_304_is_a_hit_and_not_an_error(client, hits, path):
    etag = client.get(path).headers["ETag"]
    before = hits(), hits("errors")
    assert client.get(path, headers={"If-None-Match": etag}).status_code == 304
    assert (hits(), hits("errors")) == (before[0] + 1, before[1])
    # HEAD is never a hit, conditional or not.
    assert client.head(path, headers={"If-None-Match": etag}).status_code == 304
    assert (hits(), hits("errors")) == (before[0] + 1, before[1])


@pytest.mark.parametrize("path", PATHS)
def test_head_sends_the_validators_and_the_length_without_the_body(client, path):
    get = client.get(path)
    head = client.head(path)
    assert (head.status_code, head.data) == (200, b"")
    for name in ("ETag", "Last-Modified", "Content-Length", "Content-Type"):
        assert head.headers[name] == get.headers[name], name


def test_the_docs_are_rendered_once_per_app(client, rendered_templates):
    first = client.get("/docs")
    etag = first.headers["ETag"]
    second = client.get("/docs")
    client.get("/docs", headers={"If-None-Match": etag})
    client.head("/docs")
    assert rendered_templates == ["docs.html"]
    assert second.data == first.data and second.headers["ETag"] == etag
    assert second.headers["Last-Modified"] == first.headers["Last-Modified"]
    # Other pages are not held: the index shows the live count.
    client.get("/")
    client.get("/")
    assert rendered_templates == ["docs.html", "index.html", "index.html"]


def test_the_document_is_serialized_once_per_app(client, monkeypatch):
    calls = []
    serialize = spec_resource.serialize

    def counted():
        calls.append(1)
        return serialize()

    monkeypatch.setattr(spec_resource, "serialize", counted)
    first = client.get("/api/openapi.json")
    assert client.get("/api/openapi.json").data == first.data
    assert first.get_json()["openapi"] == "3.1.0"
    assert len(calls) == 1


def test_each_app_renders_its_own_docs(make_app):
    public = make_app(PUBLIC_URL="https://api.example.com").test_client()
    private = make_app(PUBLIC_URL="https://other.example.org", ALLOW_QUERY_TOKEN=False)
    private = private.test_client()
    # Interleaved, each app's first request after the other's.
    answers = [client.get("/docs") for client in (public, private, public, private)]
    assert answers[0].data == answers[2].data and answers[1].data == answers[3].data
    assert answers[0].headers["ETag"] != answers[1].headers["ETag"]
    first, second = (html.unescape(answer.text) for answer in answers[:2])
    assert 'curl "https://api.example.com/api?data=1"' in first
    assert "other.example.org" not in first
    assert 'curl "https://other.example.org/api?data=1"' in second
    assert "api.example.com" not in second
    # The other app's ETag is not this one's.
    stale = {"If-None-Match": answers[0].headers["ETag"]}
    assert private.get("/docs", headers=stale).status_code == 200
    # Nor is the document shared: it too depends on the settings.
    documents = [client.get("/api/openapi.json") for client in (public, private)]
    assert documents[0].headers["ETag"] != documents[1].headers["ETag"]
    assert "queryToken" not in documents[1].get_json()["components"]["securitySchemes"]


def test_a_page_under_a_script_root_links_within_it(client, rendered_templates):
    """A trusted proxy may mount the app under a prefix (PROXY_FIX_X_PREFIX): the page's links
    carry it, so each prefix has a rendering of its own."""
    plain = client.get("/docs").text
    mounted = client.get("/docs", base_url="http://localhost/service").text
    assert 'href="/service/static/style.css' in mounted and 'href="/static/style.css' in plain
    assert client.get("/docs").text == plain
    assert client.get("/docs", base_url="http://localhost/service").text == mounted
    assert rendered_templates == ["docs.html", "docs.html"]


def read_answer(conn):
    """One answer from a socket: its head, and a body as long as its Content-Length says."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        assert chunk, f"the connection closed mid-head: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status, headers, _ = servers.parse_answer(head + b"\r\n\r\n")
    length = int(headers.get("content-length", 0))
    while len(rest) < length:
        chunk = conn.recv(65536)
        assert chunk, "the connection closed mid-body"
        rest += chunk
    return status, headers, rest[:length], rest[length:]


@pytest.mark.server
def test_a_real_server_sends_a_304_with_no_body_and_keeps_the_connection(start_server, sqlite_url):
    server = start_server(sqlite_url)
    request = "GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as conn:
        for path in PATHS:
            conn.sendall(request.format(path=path, extra="").encode())
            status, headers, body, extra = read_answer(conn)
            assert (status, extra) == (200, b"")
            assert len(body) == int(headers["content-length"]) > 1000
            etag = headers["etag"]

            conn.sendall(request.format(path=path, extra=f"If-None-Match: {etag}\r\n").encode())
            status, headers, body, extra = read_answer(conn)
            assert (status, body, extra) == (304, b"", b"")
            assert "content-length" not in headers and headers["etag"] == etag
            assert headers["cache-control"] == "no-cache"
        # The same connection still frames answers right: nothing of a body followed the 304.
        conn.sendall(request.format(path="/healthz", extra="Connection: close\r\n").encode())
        rest = b""
        while chunk := conn.recv(65536):
            rest += chunk
    assert rest.startswith(b"HTTP/1.1 200 ")


def test_stats_pages_are_kept_for_a_bounded_number_of_script_roots(client):
    """A trusted proxy may set the script root per request: the first few are kept, the
    rest are rendered for their request alone."""
    from api import pages

    for n in range(pages.MAX_SCRIPT_ROOTS + 5):
        page = client.get("/stats", environ_overrides={"SCRIPT_NAME": f"/p{n}"})
        assert page.status_code == 200
        assert f'href="/p{n}/docs' in page.get_data(as_text=True)
    assert len(client.application.extensions["api.stats_roots"]) == pages.MAX_SCRIPT_ROOTS
