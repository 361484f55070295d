"""Hostile input: every malformed, oversized or malicious request gets a 4xx in the error shape.

Nothing may produce a 500, and the counts stay exact: each request the app sees is one hit, and
one error when it fails, and no other stored value changes.
"""

import json
import sqlite3
from contextlib import closing
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api import catalogue, security
from api.web import edge

from . import servers


def read_database(path):
    """Every counter's total, its hourly history's total, and the token rows."""
    with closing(sqlite3.connect(path)) as db:
        counters = dict(db.execute("SELECT name, SUM(value) FROM counters GROUP BY name"))
        history = dict(db.execute("SELECT name, SUM(value) FROM counter_hours GROUP BY name"))
        tokens = db.execute("SELECT * FROM tokens ORDER BY id").fetchall()
    return counters, history, tokens


@pytest.fixture
def snapshot(database_path):
    return lambda: read_database(database_path)


def plus(counts, hits, errors):
    """counts with hits and errors added, every other value left as it was."""
    changed = dict(counts)
    changed["hits"] = changed.get("hits", 0) + hits
    if errors:
        changed["errors"] = changed.get("errors", 0) + errors
    return changed


def assert_counted_once(before, after, status):
    """One more hit, one more error if it failed, and nothing else changed."""
    error = 1 if status >= 400 else 0
    assert after[0] == plus(before[0], 1, error)
    assert after[1] == plus(before[1], 1, error)
    assert after[2] == before[2]


def assert_error_envelope(response):
    assert 400 <= response.status_code < 500, response.get_data(as_text=True)[:200]
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"type", "content"}
    assert body["type"] == "Error"
    assert isinstance(body["content"], str) and body["content"]


@pytest.fixture
def client(make_app):
    """Limits off: these tests send many requests from one address on purpose."""
    return make_app(RATELIMIT_ENABLED=False).test_client()


HOSTILE_VALUES = {
    "empty": "",
    "space": " ",
    "whitespace": " \t\r\n",
    "padded": " pizza ",
    "3000 chars": "a" * 3000,
    "nul": "\x00",
    "nul inside": "piz\x00za",
    "terminal escape": "\x1b[31mhits",
    "path traversal": "../../etc/passwd",
    "windows traversal": "..\\..\\windows\\win.ini",
    "encoded traversal": "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "sql": "' OR '1'='1",
    "sql drop": "hits'; DROP TABLE counters; --",
    "sql union": "1 UNION SELECT token_hash FROM tokens",
    "html": "<script>alert(1)</script>",
    "html attribute": '"><img src=x onerror=alert(1)>',
    "template": "{{ config }}",
    "wrong case": "PIZZA",
    "title case": "Hits",
    "wrong case private": "ERRORS",
    "cyrillic i": "p\u0456zza",
    "fullwidth": "\uff50\uff49\uff5a\uff5a\uff41",
    "zero width": "hits\u200b",
    "combining accent": "pizza\u0301",
    "arabic-indic one": "\u0661",
    "planck h": "\u210eits",
    "right-to-left override": "\u202epizza",
    "percent garbage": "%zz%",
    "replacement character": "\ufffd",
    "emoji": "\U0001f355",
}


@pytest.mark.parametrize("value", HOSTILE_VALUES.values(), ids=HOSTILE_VALUES.keys())
@pytest.mark.parametrize("where", ["query", "path", "form", "json"])
def test_hostile_data_and_kind_values(client, snapshot, value, where):
    before = snapshot()
    if where == "query":
        response = client.get("/api", query_string={"data": value})
    elif where == "path":
        response = client.get("/api/" + quote(value, safe=""))
    elif where == "form":
        response = client.post("/api", data={"data": value})
    else:
        response = client.post("/api", json={"data": value})
    assert_error_envelope(response)
    assert_counted_once(before, snapshot(), response.status_code)


# Invalid UTF-8 and percent-encoded garbage, exactly as they travel on the wire.
RAW_URLS = [
    "/api?data=%FF%FE",
    "/api?data=%C0%AF",
    "/api?data=%E2%82",
    "/api?data=%",
    "/api?data=%zz",
    "/api?data=%00",
    "/api?data=pizza%00",
    "/api?data=%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/api?data=%FF&data=hits",
    "/api/%FF%FE",
    "/api/%C0%AF",
    "/api/%E2%82",
    "/api/%00",
    "/api/pizza%00",
    "/api/%25zz",
    "/api/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/api/..%2f..%2fetc%2fpasswd",
    "/api/../../etc/passwd",
    "/api/pizza/../../errors",
    # Doubled slashes are not merged into a redirect: the path is wrong, so it is a 404.
    "/api//pizza",
    "/api//",
    "/api/pizza/",
]


@pytest.mark.parametrize("url", RAW_URLS)
def test_invalid_utf8_and_percent_garbage(client, snapshot, url):
    before = snapshot()
    response = client.get(url)
    assert_error_envelope(response)
    assert_counted_once(before, snapshot(), response.status_code)


BODIES = {
    "nested arrays": ("[" * 20_000 + "]" * 20_000, "application/json"),
    "nested objects": ('{"data": ' * 5_000 + '"pizza"' + "}" * 5_000, "application/json"),
    "array": ('["pizza"]', "application/json"),
    "array of objects": ('[{"data": "pizza"}]', "application/json"),
    "object as data": ('{"data": {"data": "pizza"}}', "application/json"),
    "array as data": ('{"data": ["pizza"]}', "application/json"),
    "number as data": ('{"data": 1}', "application/json"),
    "NaN as data": ('{"data": NaN}', "application/json"),
    "huge number": ('{"data": ' + "9" * 5_000 + "}", "application/json"),
    "string": ('"pizza"', "application/json"),
    "null": ("null", "application/json"),
    "true": ("true", "application/json"),
    "empty": ("", "application/json"),
    "invalid": ("{data: pizza}", "application/json"),
    "truncated": ('{"data": "piz', "application/json"),
    "invalid utf-8": (b'{"data": "\xff\xfe"}', "application/json"),
    "json as plain text": ('{"data": "pizza"}', "text/plain"),
    "xml": ("<data>pizza</data>", "application/xml"),
    "multipart without boundary": (b"data=pizza", "multipart/form-data"),
    "multipart garbage": (b"--x\r\nnot a part at all", "multipart/form-data; boundary=x"),
    "form with invalid utf-8": (b"data=%FF%FE", "application/x-www-form-urlencoded"),
    "form garbage": (b"\x00\xff=&&==;%", "application/x-www-form-urlencoded"),
    "binary": (bytes(range(256)) * 4, "application/octet-stream"),
    "over the limit": ('{"data": "' + "p" * 70_000 + '"}', "application/json"),
    "over the limit form": ("data=" + "p" * 70_000, "application/x-www-form-urlencoded"),
}


@pytest.mark.parametrize(("body", "content_type"), BODIES.values(), ids=BODIES.keys())
def test_hostile_bodies(client, snapshot, body, content_type):
    before = snapshot()
    response = client.post("/api", data=body, content_type=content_type)
    assert_error_envelope(response)
    assert_counted_once(before, snapshot(), response.status_code)


# Just under the 8 KiB limit on a header line: the biggest value that reaches the app.
EIGHT_KB = "x" * 8000

HEADERS = {
    "8 KB bearer token": ("/api/errors", {"Authorization": "Bearer " + EIGHT_KB}),
    "8 KB bearer token on public data": ("/api/nothing", {"Authorization": "Bearer " + EIGHT_KB}),
    "8 KB custom header": ("/api/nothing", {"X-Padding": EIGHT_KB}),
    "8 KB cookie": ("/api/nothing", {"Cookie": "a=" + EIGHT_KB}),
    "8 KB accept": ("/api/nothing", {"Accept": "text/" + EIGHT_KB}),
    "8 KB user agent": ("/api/nothing", {"User-Agent": EIGHT_KB}),
    # With the Host and User-Agent the test client adds, 100: as many as a request may have.
    "100 headers": ("/api/nothing", {f"X-H{i}": "v" for i in range(98)}),
    "empty authorization": ("/api/pizza", {"Authorization": ""}),
    "scheme only": ("/api/pizza", {"Authorization": "Bearer"}),
    "three words": ("/api/pizza", {"Authorization": "Bearer a b"}),
    "basic": ("/api/pizza", {"Authorization": "Basic dXNlcjpwYXNz"}),
    "other scheme": ("/api/pizza", {"Authorization": "Negotiate abc"}),
    "commas": ("/api/pizza", {"Authorization": ",,,"}),
    "latin-1 token": ("/api/errors", {"Authorization": "Bearer \u00e9\u00e8\u00ea"}),
    "lowercase scheme wrong token": ("/api/errors", {"Authorization": "bearer rapi_nope"}),
    "unparseable quality": ("/api/nothing", {"Accept": "application/problem+json;q=abc"}),
    "accept punctuation": ("/api/nothing", {"Accept": ";;;,,,"}),
    "negative quality": ("/api/nothing", {"Accept": "*/*;q=-1"}),
    "garbage content length": ("/api/nothing", {"Content-Length": "abc"}),
    "garbage forwarded for": ("/api/nothing", {"X-Forwarded-For": "not an address, \x00"}),
}


@pytest.mark.parametrize(("path", "headers"), HEADERS.values(), ids=HEADERS.keys())
def test_hostile_headers(client, snapshot, path, headers):
    before = snapshot()
    response = client.get(path, headers=headers)
    assert_error_envelope(response)
    assert_counted_once(before, snapshot(), response.status_code)


def test_counts_are_exact_after_the_barrage(client, snapshot):
    before = snapshot()[0]
    sent = 0
    for value in HOSTILE_VALUES.values():
        client.get("/api", query_string={"data": value})
        sent += 1
    for body, content_type in BODIES.values():
        client.post("/api", data=body, content_type=content_type)
        sent += 1
    reported = client.get("/api?data=hits").get_json()["content"]
    assert reported == before.get("hits", 0) + sent + 1
    assert snapshot()[0]["errors"] == before.get("errors", 0) + sent


# Nothing a client sends is written back: not its path, query, body or headers, in any page,
# answer or error, in any shape.

MARKER = "zq7marker"
MARKED_REQUESTS = {
    "typed path": ("get", f"/api/{MARKER}", {}),
    "data value": ("get", f"/api?data={MARKER}", {}),
    "parameter name": ("get", f"/api?{MARKER}=1", {}),
    "query token": ("get", f"/api/errors?token=rapi_{MARKER}", {}),
    "deep path": ("get", f"/api/{MARKER}/{MARKER}", {}),
    "page path": ("get", f"/{MARKER}", {}),
    "page query": ("get", f"/docs?{MARKER}=1", {}),
    "index query": ("get", f"/?q={MARKER}", {}),
    "stats token": ("get", f"/stats?token={MARKER}", {}),
    "static file": ("get", f"/static/{MARKER}.css", {}),
    "method": ("put", f"/api?data={MARKER}", {}),
    "page method": ("post", f"/docs?{MARKER}=1", {}),
    "form body": ("post", "/api", {"data": {"data": MARKER}}),
    "json body": ("post", "/api", {"json": {"data": MARKER, MARKER: 1}}),
    "oversized body": ("post", "/api", {"data": {"data": MARKER * 10_000}}),
    "header token": ("get", "/api/errors", {"headers": {"Authorization": f"Bearer {MARKER}"}}),
    "header scheme": ("get", "/api/pizza", {"headers": {"Authorization": f"{MARKER} x"}}),
    "teapot": ("get", f"/api/teapot?{MARKER}", {}),
    "health": ("get", f"/healthz?{MARKER}", {}),
    "spec": ("get", f"/api/openapi.json?{MARKER}", {}),
}
MARKED_HEADERS = {
    "Host": f"{MARKER}.example",
    "User-Agent": MARKER,
    "Referer": f"https://{MARKER}.example/",
    "Origin": f"https://{MARKER}.example",
    "X-Forwarded-Host": f"{MARKER}.example",
    "X-Forwarded-For": f"{MARKER}",
    "Cookie": f"{MARKER}={MARKER}",
    "Accept-Language": MARKER,
}


@pytest.mark.parametrize("accept", ["application/json", "application/problem+json", "text/html"])
@pytest.mark.parametrize(
    ("method", "path", "kwargs"), MARKED_REQUESTS.values(), ids=MARKED_REQUESTS.keys()
)
def test_nothing_the_client_sent_is_written_back(client, method, path, kwargs, accept):
    headers = {**MARKED_HEADERS, "Accept": accept, **kwargs.get("headers", {})}
    response = getattr(client, method)(path, **{**kwargs, "headers": headers})
    with response:
        assert MARKER not in response.get_data(as_text=True).lower()
        assert MARKER not in str(response.headers).lower()


# Property tests: no value whatever produces a 5xx or touches any other stored value.

FEW = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def check_answer(response, value, before, after, typed_path=False):
    kind = catalogue.KINDS.get(value)
    if typed_path and value == "teapot":
        assert response.status_code == 418
    elif kind is None:
        assert_error_envelope(response)
    else:
        assert response.status_code == (401 if kind.private else 200)
    assert_counted_once(before, after, response.status_code)


@FEW
@given(value=st.text(max_size=300))
def test_any_data_value(client, snapshot, value):
    for send in (
        lambda: client.get("/api", query_string={"data": value}),
        lambda: client.post("/api", data={"data": value}),
        lambda: client.post("/api", json={"data": value}),
    ):
        before = snapshot()
        response = send()
        check_answer(response, value, before, snapshot())


@FEW
@given(value=st.one_of(st.sampled_from(sorted(catalogue.KINDS)), st.text(max_size=300)))
def test_any_typed_path(client, snapshot, value):
    before = snapshot()
    response = client.get("/api/" + quote(value, safe=""))
    check_answer(response, value, before, snapshot(), typed_path=True)


@FEW
@given(raw=st.binary(max_size=200))
def test_any_bytes_in_the_query_and_path(client, snapshot, raw):
    encoded = "".join(f"%{byte:02X}" for byte in raw)
    # What the app sees: the bytes decoded as UTF-8, invalid sequences replaced.
    value = raw.decode("utf-8", "replace")
    for url, typed_path in ((f"/api?data={encoded}", False), (f"/api/{encoded}", True)):
        before = snapshot()
        response = client.get(url)
        check_answer(response, value, before, snapshot(), typed_path)


@FEW
@given(
    body=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
        max_leaves=20,
    )
)
def test_any_json_body(client, snapshot, body):
    before = snapshot()
    response = client.post("/api", data=json.dumps(body), content_type="application/json")
    data = body.get("data") if isinstance(body, dict) else None
    if isinstance(data, str) and data in catalogue.KINDS:
        assert response.status_code in (200, 401)
        assert_counted_once(before, snapshot(), response.status_code)
    else:
        assert_error_envelope(response)
        assert_counted_once(before, snapshot(), response.status_code)


# The real server: what it refuses before the app sees a request, and what the app refuses.


FORM = b"Content-Type: application/x-www-form-urlencoded\r\n"

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": security.DATA_CSP,
}

# Who answers each one: the app's edge in the envelope (not a hit), the server with an empty
# answer of its own (not a hit: the request never existed for the app), or the app (a hit).
EDGE, SERVER, APP = "edge", "server", "app"

# (raw request, status, who answers)
RAW_REQUESTS = {
    "request line over the limit": (
        b"GET /api?data=" + b"a" * 5000 + b" HTTP/1.1\r\n\r\n",
        414,
        EDGE,
    ),
    "header over 8 KB": (
        b"GET /api/pizza HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8200 + b"\r\n\r\n",
        431,
        EDGE,
    ),
    "101 headers": (
        b"GET /api/pizza HTTP/1.1\r\n"
        + b"".join(b"X-H%d: v\r\n" % i for i in range(101))
        + b"\r\n",
        431,
        SERVER,
    ),
    "head over the server's buffer": (
        b"GET /api/pizza HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 8000) for i in range(60))
        + b"\r\n",
        431,
        SERVER,
    ),
    "garbage line": (b"GARBAGE\r\n\r\n", 400, SERVER),
    "binary line": (b"\x00\x01\x02\xff\xfe\r\n\r\n", 400, SERVER),
    "http/2 preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", None, SERVER),
    "nul in path": (b"GET /api/\x00 HTTP/1.1\r\nHost: x\r\n\r\n", 400, SERVER),
    "invalid utf-8 in path": (b"GET /api/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n", 400, SERVER),
    "header without colon": (
        b"GET /api/pizza HTTP/1.1\r\nHost: x\r\nAuthorization Bearer x\r\n\r\n",
        400,
        SERVER,
    ),
    "garbage content length": (
        b"POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        400,
        SERVER,
    ),
    # Chunked bodies are refused whatever their framing, so none can smuggle a request.
    "length and chunked": (
        b"POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        411,
        APP,
    ),
    "bad chunk size": (
        b"POST /api HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        + FORM
        + b"\r\nzz\r\nabc\r\n0\r\n\r\n",
        411,
        APP,
    ),
    "unterminated chunk": (
        b"POST /api HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        + FORM
        + b"\r\na\r\ndata=pizza",
        411,
        APP,
    ),
    "length over the limit": (
        b"POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n" + FORM + b"\r\n",
        413,
        APP,
    ),
}


@pytest.mark.server
def test_real_server_answers_malformed_http_and_counts_only_what_reaches_the_app(
    start_server, tmp_path
):
    url = f"sqlite:///{tmp_path}/hostile.sqlite3"
    servers.run_release(servers.clean_env(DATABASE_URL=url))
    server = start_server(url)
    before = read_database(tmp_path / "hostile.sqlite3")[0]

    reached_app = 0
    for name, (raw, status, answers) in RAW_REQUESTS.items():
        answered, headers, body = servers.parse_answer(servers.exchange(server.port, raw))
        assert (name, answered) == (name, status)
        if answers == SERVER:
            assert (name, body) == (name, b"")
        else:
            document = json.loads(body)
            assert set(document) == {"type", "content"} and document["type"] == "Error", name
            # Whoever answered, the edge or the app, the security headers came with it.
            assert (name, {h: headers.get(h.lower()) for h in SECURITY_HEADERS}) == (
                name,
                SECURITY_HEADERS,
            )
        reached_app += answers == APP

    # TLS spoken to plain HTTP, then a closed connection: at most the server's empty 400.
    tls = b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"
    answered, _, body = servers.parse_answer(servers.exchange(server.port, tls, half_close=True))
    assert (answered, body) in ((None, b""), (400, b""))
    # A body with a Content-Length is read whole.
    whole = b"POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n" + FORM + b"\r\ndata=pizza"
    answered, _, body = servers.parse_answer(servers.exchange(server.port, whole))
    assert (answered, json.loads(body)["type"]) == (200, "Pizza")

    # What was refused before the app is not a hit; what the app answered is.
    after = read_database(tmp_path / "hostile.sqlite3")[0]
    assert after["hits"] == before.get("hits", 0) + reached_app + 1
    assert after["errors"] == before.get("errors", 0) + reached_app
    with closing(sqlite3.connect(tmp_path / "hostile.sqlite3")) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def answer_at(server, raw):
    """(status, the envelope's content or None) of raw bytes sent to a real server."""
    status, _headers, body = servers.parse_answer(servers.exchange(server.port, raw))
    return status, json.loads(body)["content"] if body else None


@pytest.mark.server
def test_real_server_reads_headers_and_hosts_as_rfc_9112_asks(start_server, sqlite_url):
    """granian joins repeated header lines with a comma, and hands over a missing Host as an
    empty one: each line is held to the limit on its own, and a Host twice or none is 400."""
    server = start_server(sqlite_url)
    repeated = b"".join(b"X-A: " + b"a" * 2005 + b"\r\n" for _ in range(8))
    assert (
        answer_at(server, b"GET /api/pizza HTTP/1.1\r\nHost: x\r\n" + repeated + b"\r\n")[0] == 200
    )
    one_long_line = b"X-A: " + b"a" * 8190 + b"\r\n"
    assert (
        answer_at(server, b"GET /api/pizza HTTP/1.1\r\nHost: x\r\n" + one_long_line + b"\r\n")[0]
        == 431
    )
    bad_host = (400, security.HOST_REFUSED)
    assert answer_at(server, b"GET /api/pizza HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n") == bad_host
    assert answer_at(server, b"GET /api/pizza HTTP/1.1\r\nConnection: close\r\n\r\n") == bad_host
    # HTTP/1.0 has no Host to require; its access line names it as sent.
    assert answer_at(server, b"GET /api/pizza?v=10 HTTP/1.0\r\n\r\n")[0] == 200
    server.wait_for_output('"GET /api/pizza?v=10 HTTP/1.0" 200')


@pytest.mark.server
def test_an_unreadable_forwarded_address_is_refused_not_charged_to_the_proxy(
    start_server, sqlite_url
):
    """Behind a trusted proxy, a non-ASCII byte in X-Forwarded-For reaches the app as an empty
    value; taken as it is, the client would become the proxy, in its rate-limit bucket and
    its log lines."""
    server = start_server(
        sqlite_url,
        PROXY_FIX_X_FOR=1,
        RATELIMIT_ENABLED="true",
        RATELIMIT_PER_CLIENT="2 per minute",
    )
    mangled = b"GET /api/pizza HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.9\xe9\r\n\r\n"
    for _ in range(4):
        assert answer_at(server, mangled) == (400, edge.UNREADABLE_FORWARDED)
    # The proxy's own address, which the mangled requests would have been charged to, still
    # has its whole budget, and so has the client.
    plain = b"GET /api/pizza HTTP/1.1\r\nHost: x\r\n\r\n"
    client = b"GET /api/pizza HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n"
    assert [answer_at(server, plain)[0] for _ in range(2)] == [200, 200]
    assert [answer_at(server, client)[0] for _ in range(2)] == [200, 200]
