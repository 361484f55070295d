"""What an operator reads: request IDs, durations, and every log line in text or JSON, on the
real server the Procfile starts."""

import json
import re
import socket
import urllib.error
import urllib.request

import pytest

from api.web import request_ids

# Every request kind the checks below make the server log: an answer, an error of the app's,
# refusals of the edge, a wrong token, a rate-limited client, a body that is not whole.
FORM = b"Content-Type: application/x-www-form-urlencoded\r\n"
RAW = [
    b"GET /api?data=" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /api/pizza HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8200 + b"\r\n\r\n",
    b"POST /api HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n" + FORM + b"\r\n0\r\n\r\n",
    b"GET /api/pizza HTTP/1.1\r\nHost: x\r\nUser-Agent: a\x1bb\r\nReferer: /?token=rapi_x\r\n\r\n",
]


def get(url, headers=None):
    """(status, headers) of a GET; any HTTP status is an answer."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            answer.read()
            return answer.status, answer.headers
    except urllib.error.HTTPError as refused:
        refused.read()
        return refused.code, refused.headers


def exercise(server):
    """Make the server log one of everything; the request IDs its answers named, by kind."""
    ids = {}
    for name, path, headers in [
        ("ok", "/api?data=1", {}),
        ("not-found", "/nowhere", {}),
        ("wrong-token", "/api?data=errors", {"Authorization": "Bearer rapi_wrongwrongwrong"}),
        ("limited", "/api/pizza", {}),
        ("limited", "/api/pizza", {}),
    ]:
        status, headers_back = get(server.url + path, headers)
        ids[name] = headers_back[request_ids.HEADER]
    for raw in RAW:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
            conn.sendall(raw)
            conn.recv(65536)
    return ids


def test_each_answer_names_its_request_and_the_logs_say_the_same(start_server, sqlite_url):
    server = start_server(sqlite_url, RATELIMIT_ENABLED="true", RATELIMIT_PER_CLIENT="4 per minute")
    ids = exercise(server)
    assert all(re.fullmatch(r"[0-9a-f]{32}", found) for found in ids.values())
    assert len(set(ids.values())) == len(ids)
    server.wait_for_output(ids["wrong-token"])
    server.stop()
    output = server.output()
    # The access line ends with the seconds the request took and its ID.
    line = next(line for line in output.splitlines() if line.endswith(ids["ok"]))
    done = r'"GET /api\?data=1 HTTP/1\.1" 200 \d+ "-" "[^"]*" \d+\.\d{4} '
    assert re.search(done + ids["ok"], line)
    # The app's warning about the wrong token carries that request's ID, as its access line does.
    warning = [line for line in output.splitlines() if "rejected token" in line]
    assert len(warning) == 1 and ids["wrong-token"] in warning[0]
    assert re.match(r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\] WARNING ", warning[0])
    # granian's own lines have a time too.
    started = next(line for line in output.splitlines() if "Starting granian" in line)
    assert re.match(r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\] INFO granian: ", started)


def test_in_json_every_line_of_every_log_is_one_object(start_server, sqlite_url):
    server = start_server(
        sqlite_url,
        LOG_FORMAT="json",
        RATELIMIT_ENABLED="true",
        RATELIMIT_PER_CLIENT="4 per minute",
        WEB_CONCURRENCY=1,
    )
    ids = exercise(server)
    server.wait_for_output(ids["wrong-token"])
    server.stop()
    records = [json.loads(line) for line in server.output().splitlines()]
    assert all({"time", "level"} <= set(record) for record in records)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r["time"]) for r in records)
    access = {r["request_id"]: r for r in records if r.get("logger") == "access"}
    assert {access[ids[kind]]["status"] for kind in ("ok", "not-found", "wrong-token")} == {
        200,
        404,
        401,
    }
    assert access[ids["limited"]]["status"] == 429
    assert all(r["duration_ms"] >= 0 for r in access.values())
    # The edge's refusals, before the app: the request line and the header too long.
    assert {r["status"] for r in access.values()} >= {414, 431}
    # Masked and escaped as in text: a token never shows, whatever field it came in.
    assert "rapi_x" not in server.output() and "rapi_wrongwrongwrong" not in server.output()
    (warning,) = [r for r in records if "rejected token" in r.get("message", "")]
    assert (warning["level"], warning["request_id"]) == ("WARNING", ids["wrong-token"])
    assert any(r.get("logger") == "_granian" for r in records)


@pytest.mark.parametrize(
    ("trusted", "sent", "kept"),
    [
        (True, "rt-2024-08-01-abc", True),
        (True, "bad id with spaces", False),
        (True, "x" * 201, False),
        (False, "chosen-by-the-client", False),
    ],
)
def test_an_inbound_request_id_is_kept_only_from_a_trusted_proxy(make_app, trusted, sent, kept):
    client = make_app(PROXY_FIX_X_FOR=1 if trusted else 0).test_client()
    answered = client.get("/api?data=1", headers={"X-Request-ID": sent}).headers["X-Request-ID"]
    assert (answered == sent) is kept
    assert request_ids.ACCEPTED.fullmatch(answered)


def test_every_answer_has_a_request_id_even_one_refused_before_the_app(client):
    refused = client.get("/api/pizza", headers={"X-Big": "a" * 8200})
    assert refused.status_code == 431 and len(refused.headers["X-Request-ID"]) == 32
