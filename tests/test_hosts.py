"""The Host header: one the service cannot use is a counted 400 in the envelope, never a 500,
TRUSTED_HOSTS narrows the ones it answers for, and no page is built from it."""

import json

import pytest

from api import create_app, security

from . import servers

# Hosts that are not valid IDNA: Werkzeug refuses the first two when it binds the URL map,
# and the third only when it shows a URL.
BAD_HOSTS = {
    "empty label": "a..b",
    "label over 63": "a" * 64 + ".example",
    "punycode that decodes to nothing": "xn--zz",
}
# One route of each kind, and paths that match none.
PATHS = ["/api?data=1", "/api/pizza", "/api/nothing", "/", "/docs", "/stats", "/nowhere"]


def get_with_host(port, target, host):
    """(status, headers, body) of a GET with this Host, sent as raw bytes."""
    raw = f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    return servers.parse_answer(servers.exchange(port, raw.encode()))


def assert_host_refused(answer, host):
    status, headers, body = answer
    assert status == 400, (host, body[:300])
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"type": "Error", "content": security.HOST_REFUSED}
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["content-security-policy"] == security.DATA_CSP


@pytest.mark.server
def test_a_host_that_is_not_valid_idna_is_a_counted_400_on_every_route(
    start_server, sqlite_url, read_counter
):
    server = start_server(sqlite_url)
    before = read_counter(sqlite_url), read_counter(sqlite_url, "errors")
    for host in BAD_HOSTS.values():
        for target in PATHS:
            assert_host_refused(get_with_host(server.port, target, host), (host, target))
    sent = len(BAD_HOSTS) * len(PATHS)
    # Every one reached the app: a hit, and an error.
    assert read_counter(sqlite_url) == before[0] + sent
    assert read_counter(sqlite_url, "errors") == before[1] + sent
    server.stop()
    assert "Traceback" not in server.output()
    assert "escaped" not in server.output()


@pytest.mark.server
def test_with_trusted_hosts_another_host_is_a_counted_400(start_server, sqlite_url, read_counter):
    server = start_server(sqlite_url, TRUSTED_HOSTS="127.0.0.1, api.example.com, .example.org")
    allowed = ["api.example.com", "api.example.com:8000", "docs.example.org", "example.org"]
    refused = ["evil.example", "api.example.com.evil.example", "example.org.evil", "a..b"]
    before = read_counter(sqlite_url), read_counter(sqlite_url, "errors")
    for target in ("/api?data=1", "/docs", "/nowhere"):
        for host in allowed:
            assert get_with_host(server.port, target, host)[0] == (
                404 if target == "/nowhere" else 200
            )
        for host in refused:
            answer = get_with_host(server.port, target, host)
            assert_host_refused(answer, host)
            assert host.encode() not in answer[2]
    assert read_counter(sqlite_url) == before[0] + 3 * (len(allowed) + len(refused))
    # Every refused Host is an error, and so is each allowed one's 404.
    assert read_counter(sqlite_url, "errors") == before[1] + 3 * len(refused) + len(allowed)


def test_a_refused_host_is_never_echoed_and_answers_in_the_shape_asked_for(make_app):
    client = make_app(TRUSTED_HOSTS=["api.example.com"]).test_client()
    problem = client.get(
        "/docs", headers={"Host": "evil.example", "Accept": "application/problem+json"}
    )
    assert problem.status_code == 400
    assert problem.get_json()["detail"] == security.HOST_REFUSED
    assert b"evil.example" not in problem.data


@pytest.mark.parametrize(
    ("value", "trusted"),
    [
        (None, None),
        ("", None),
        ("api.example.com", ["api.example.com"]),
        (" api.example.com , .example.org ", ["api.example.com", ".example.org"]),
    ],
)
def test_trusted_hosts_come_from_the_environment(monkeypatch, database_url, value, trusted):
    if value is not None:
        monkeypatch.setenv("TRUSTED_HOSTS", value)
    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url})
    assert app.config["TRUSTED_HOSTS"] == trusted


@pytest.mark.server
@pytest.mark.parametrize("header", ["Host", "X-Forwarded-Host"])
def test_no_page_is_built_from_the_host_a_client_sent(start_server, sqlite_url, header):
    # With X-Forwarded-Host trusted, the proxy's header becomes the Host the app reads.
    server = start_server(sqlite_url, PROXY_FIX_X_HOST=1)
    for target in ("/", "/docs", "/stats", "/nowhere"):
        raw = f"GET {target} HTTP/1.1\r\nHost: x\r\n{header}: poisoned.example\r\n\r\n"
        if header == "Host":
            raw = raw.replace("Host: x\r\n", "")
        status, headers, body = servers.parse_answer(servers.exchange(server.port, raw.encode()))
        assert status == (404 if target == "/nowhere" else 200)
        assert b"poisoned" not in body, target
        # A shared cache must ask again before it hands the page to anyone.
        assert headers["cache-control"] == "no-cache"
