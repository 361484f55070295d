"""A token never reaches a log or an error page, however a client sends it."""

import base64
import logging
import re
import socket
import urllib.error
import urllib.request

import pytest

from api.web import access_log, masking

from . import servers

PREFIX = "rapi_"
# A token-shaped string that is not a real token, for the pure masking tests.
SHAPED = PREFIX + "Zx9" * 14 + "Q"


@pytest.mark.parametrize(
    ("line", "masked"),
    [
        ("GET /api?data=errors&token=abc HTTP/1.1", "GET /api?data=errors&token=*** HTTP/1.1"),
        ("GET /api?%74oken=abc HTTP/1.1", "GET /api?%74oken=*** HTTP/1.1"),
        ("/api?TOKEN=abc;data=1", "/api?TOKEN=***;data=1"),
        ("/api?token=abc", "/api?token=***"),
        ('"https://x.example/?token=abc" "curl"', '"https://x.example/?token=***" "curl"'),
        ("token=abc&data=1", "token=***&data=1"),
        ("/api?tokens=abc&mytoken=def", "/api?tokens=abc&mytoken=def"),
        (
            "Invalid HTTP Header: 'Authorization Bearer abc'",
            "Invalid HTTP Header: 'Authorization Bearer ***'",
        ),
        ("basic dXNlcjpwYXNz", "basic ***"),
        (f"GET /api/{SHAPED} HTTP/1.1", "GET /api/*** HTTP/1.1"),
        ("rejected token rapi_ab12... from 10.0.0.1", "rejected token rapi_ab12... from 10.0.0.1"),
        # A token inside another parameter's value, percent-encoded, once or twice.
        ("/login?next=%2Fapi%3Ftoken%3Dabc&x=1", "/login?next=***&x=1"),
        ("/login?next=%252Fapi%253Ftoken%253Dabc", "/login?next=***"),
        (
            "/?u=" + "".join(f"%{ord(c):02X}" for c in SHAPED) + "&v=2",
            "/?u=***&v=2",
        ),
        ("/login?next=%2Fapi%3Fdata%3D1", "/login?next=%2Fapi%3Fdata%3D1"),
    ],
)
def test_mask_secrets(line, masked):
    assert masking.mask_secrets(line, masking.token_pattern(PREFIX)) == masked


def test_a_record_is_escaped_once_however_many_apps_share_the_logger(make_app, caplog):
    apps = [make_app() for _ in range(3)]
    with caplog.at_level(logging.WARNING, logger="api"):
        apps[0].logger.warning("from %s", "a\\b\nc")
    assert caplog.records[-1].getMessage() == "from a\\\\b\\x0Ac"


def test_app_log_filter_masks_formatted_messages(caplog):
    logger = logging.getLogger("test.app.log")
    logger.addFilter(masking.SafeMessageFilter(PREFIX))
    with caplog.at_level(logging.WARNING, logger="test.app.log"):
        logger.warning("Invalid request: %r", f"GET /api?token={SHAPED}")
    assert SHAPED not in caplog.text
    assert "token=***" in caplog.text


# The access line, as the edge writes it for every answered request.

BASE_ENVIRON = {
    "REQUEST_METHOD": "GET",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "REMOTE_ADDR": "10.0.0.1",
    "PATH_INFO": "/api",
    "QUERY_STRING": "data=hits",
}


def access_line(**environ):
    """The line AccessLog writes for a 200 with a 12-byte body that took 3 ms, its time
    replaced."""
    written = []
    log = access_log.AccessLog(PREFIX, write=written.append)
    log.log({**BASE_ENVIRON, "api.request_id": "4f2a", **environ}, 200, 12, 0.003)
    (line,) = written
    return re.sub(rb"\[[^]]*\]", b"[time]", line, count=1).decode("ascii")


def test_access_line_is_the_combined_format():
    line = access_line(HTTP_REFERER="http://a.test/", HTTP_USER_AGENT="c")
    # The combined format, then the seconds it took and its request ID.
    assert line == (
        '10.0.0.1 - - [time] "GET /api?data=hits HTTP/1.1" 200 12 "http://a.test/" "c" '
        "0.0030 4f2a\n"
    )


def test_access_line_time_is_the_common_log_format():
    written = []
    access_log.AccessLog(PREFIX, write=written.append).log(BASE_ENVIRON, 200, 1)
    assert re.search(rb" \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000\] ", written[0])


def test_access_line_rebuilds_the_target_a_server_decoded():
    # granian hands over the path percent-decoded (as latin-1 text); the line shows it encoded.
    line = access_line(PATH_INFO="/api/a b/\xe9", QUERY_STRING="")
    assert '"GET /api/a%20b/%E9 HTTP/1.1"' in line
    # A server that keeps the raw target (gunicorn's RAW_URI) has it logged as sent.
    assert '"GET /api/%61 HTTP/1.1"' in access_line(RAW_URI="/api/%61")


def test_access_lines_mask_every_secret():
    basic = base64.b64encode(f"{SHAPED}:x".encode()).decode()
    line = access_line(
        QUERY_STRING="data=errors&token=hunter2&%74oken=hunter4",
        HTTP_REFERER="https://a.test/?token=hunter3",
        HTTP_USER_AGENT=f"agent {SHAPED}",
        HTTP_AUTHORIZATION=f"Basic {basic}",
        PATH_INFO=f"/api/{SHAPED}",
    )
    assert "token=***" in line and "%74oken=***" in line
    for secret in ("hunter2", "hunter3", "hunter4", SHAPED, basic):
        assert secret not in line


@pytest.mark.parametrize(
    ("field", "value", "logged"),
    [
        # A quote would close the field early and let a client forge the fields after it.
        ("HTTP_USER_AGENT", 'a" 200 1 "b', '"a\\" 200 1 \\"b"'),
        ("HTTP_REFERER", "x\\y", '"x\\\\y"'),
        # A line feed would start a forged line; terminal escapes would rewrite a terminal.
        ("HTTP_USER_AGENT", "a\nfake 200", '"a\\x0Afake 200"'),
        ("HTTP_USER_AGENT", "\x1b[2J", '"\\x1B[2J"'),
        ("HTTP_USER_AGENT", "caf\xe9", '"caf\\xE9"'),
        ("REQUEST_METHOD", 'G"T', '"G\\"T /api'),
        ("QUERY_STRING", 'a="b', '/api?a=\\"b HTTP'),
        # Behind a trusted proxy the address is what the client wrote, but a comma.
        ("REMOTE_ADDR", "203.0.113.9 200\tx", "203.0.113.9\\x20200\\x09x - - "),
    ],
)
def test_request_controlled_text_is_escaped(field, value, logged):
    line = access_line(**{field: value})
    assert logged in line
    assert line.count("\n") == 1 and line.endswith("\n")
    # Exactly the nine fields of the format and the two after it, whatever the client sent.
    fields = re.fullmatch(
        r'(\S+) - - \[time\] "((?:[^"\\]|\\.)*)" (\d+) (\d+) '
        r'"((?:[^"\\]|\\.)*)" "((?:[^"\\]|\\.)*)" \d+\.\d{4} \S+\n',
        line,
    )
    assert fields is not None, line
    assert fields.group(3, 4) == ("200", "12")


def test_a_line_stays_whole_in_one_pipe_write():
    line = access_line(
        QUERY_STRING="q=" + "\x01" * 4000,
        HTTP_REFERER="\x02" * 9000,
        HTTP_USER_AGENT='"' * 9000,
    )
    assert len(line.encode()) < 4096
    assert line.count("\n") == 1
    assert '...""' not in line  # a cut never leaves half an escape before the quote
    assert re.search(r'" 200 12 "(\\x02)+\.\.\." "(\\")+\.\.\." 0\.0030 4f2a\n$', line)


def test_the_app_logs_one_line_per_request_with_the_address_it_trusts(make_app):
    app = make_app(ACCESS_LOG=True, PROXY_FIX_X_FOR=1)
    written = []
    app.wsgi_app.access_log.write = written.append
    client = app.test_client()
    client.get("/api?data=1", headers={"X-Forwarded-For": "203.0.113.7"})
    client.get("/nowhere", headers={"User-Agent": "probe"})
    client.post("/api", data={"data": "pizza"})
    lines = [line.decode() for line in written]
    assert len(lines) == 3
    assert lines[0].startswith("203.0.113.7 - - [")
    assert '"GET /api?data=1 HTTP/1.1" 200 ' in lines[0]
    assert '"GET /nowhere HTTP/1.1" 404 ' in lines[1] and ' "probe" ' in lines[1]
    assert '"POST /api HTTP/1.1" 200 ' in lines[2]


# The app's own output, through the test client.


def error_answers(client, secret):
    """Requests that carry the secret and fail in every layer, with every error shape."""
    for accept in ("application/json", "application/problem+json", "text/html"):
        headers = {"Accept": accept}
        yield client.get(f"/nowhere?token={secret}", headers=headers)
        yield client.get(f"/api/nothing?token={secret}", headers=headers)
        yield client.put(f"/api?token={secret}", headers=headers)
        yield client.get(f"/api/{secret}", headers=headers)
        yield client.get(f"/api?data={secret}", headers=headers)
        yield client.get("/api/errors", headers={**headers, "Authorization": f"Token {secret}"})
        yield client.get(
            f"/api/errors?token={secret}", headers={**headers, "Authorization": f"Bearer {secret}"}
        )
        yield client.get("/api/errors", headers={**headers, "Authorization": f"Bearer {secret}x"})
        yield client.post("/api", json={"data": secret, "token": secret}, headers=headers)


def test_error_pages_and_app_logs_never_echo_a_token(make_app, runner, token, caplog):
    client = make_app(ALLOW_QUERY_TOKEN=False).test_client()
    with caplog.at_level(logging.DEBUG):
        answers = list(error_answers(client, token)) + list(
            error_answers(runner.app.test_client(), token)
        )
    assert all(400 <= answer.status_code < 500 for answer in answers)
    for answer in answers:
        assert token not in answer.get_data(as_text=True)
        assert token not in str(answer.headers)
    assert "rejected token" in caplog.text  # the failures were logged ...
    assert token not in caplog.text  # ... without the secret
    assert token[len(PREFIX) + 8 :] not in caplog.text


# The real server: access log, error log and app log, all in one output.


def send(url, headers=None):
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def send_raw(port, data):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(data)
        return conn.recv(65536)


@pytest.mark.server
def test_a_token_never_reaches_any_server_output(start_server, tmp_path):
    url = f"sqlite:///{tmp_path}/logs.sqlite3"
    env = servers.clean_env(DATABASE_URL=url)
    servers.run_release(env)
    secret = servers.mint_token(env, "log-test")
    server = start_server(url, LOG_LEVEL="DEBUG")
    base = server.url
    basic = base64.b64encode(f"{secret}:".encode()).decode()

    answers = [
        send(f"{base}/api/errors?token={secret}"),
        send(f"{base}/api?data=errors&token={secret}"),
        send(f"{base}/api/errors", {"Authorization": f"Bearer {secret}"}),
        send(f"{base}/api/pizza?%74oken={secret}"),
        send(f"{base}/api/pizza", {"Referer": f"https://client.example/page?token={secret}"}),
        send(f"{base}/api/errors", {"Authorization": f"Basic {basic}"}),
        send(f"{base}/api/errors?token={secret}", {"Authorization": f"Bearer {secret}"}),
        send(f"{base}/api/errors", {"Authorization": f"Token {secret}"}),
        send(f"{base}/api/{secret}"),
        send(f"{base}/nowhere?token={secret}", {"Accept": "text/html"}),
        send(f"{base}/api/errors?token={secret[:-1]}", {"Accept": "application/problem+json"}),
    ]
    statuses = [status for status, _ in answers]
    assert statuses == [200, 200, 200, 200, 200, 400, 400, 400, 404, 404, 401]
    assert all(secret.encode() not in body for _, body in answers)

    # Malformed HTTP, which the server refuses before the app.
    for raw in (
        f"GET /api/errors?token={secret}\r\n\r\n",
        f"GET /api/errors HTTP/1.1\r\nHost: x\r\nAuthorization Bearer {secret}\r\n\r\n",
        f"GET /api/errors?token={secret} HTTP/9.9\r\nHost: x\r\n\r\n",
    ):
        assert send_raw(server.port, raw.encode()).startswith(b"HTTP/1.1 4")

    server.stop()
    output = server.output()
    # The requests were logged, masked ...
    assert "GET /api/errors?token=*** HTTP/1.1" in output
    assert "GET /api/pizza?%74oken=*** HTTP/1.1" in output
    assert '"https://client.example/page?token=***"' in output
    assert "GET /api/*** HTTP/1.1" in output
    assert "rejected token rapi_" in output
    # ... and no part of the secret past its prefix appears anywhere, nor its Basic form.
    assert secret not in output
    assert secret[len(PREFIX) : len(PREFIX) + 12] not in output
    assert basic not in output


# The app log: request text in a message is escaped as the access log's fields are.

# (request target and extra header lines as sent, what its "rejected token" message reads)
FORGERIES = [
    # A terminal escape that would clear the screen of whoever reads the log.
    (b"/api/errors?token=%1B%5B2J", b"", "token \\x1B[2J... from 127.0.0.1"),
    # A line feed that would start a forged line after the prefix.
    (b"/api/errors?token=rapi_%0Afake", b"", "token rapi_\\x0Afak... from 127.0.0.1"),
    (b"/api/errors?token=%0D%0A%07x", b"", "token \\x0D\\x0A\\x07x... from 127.0.0.1"),
    # An address a trusted proxy passed on: whatever the client wrote, but a comma.
    (
        b"/api/errors?token=wrong",
        b"X-Forwarded-For: 203.0.113.9\tforged\r\n",
        "token wron... from 203.0.113.9\\x09forged",
    ),
]


@pytest.mark.server
def test_request_text_in_the_app_log_is_escaped_one_line_per_message(start_server, sqlite_url):
    server = start_server(sqlite_url, PROXY_FIX_X_FOR=1)
    for target, headers, _ in FORGERIES:
        raw = b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n"
        assert servers.parse_answer(servers.exchange(server.port, raw))[0] == 401
    server.stop()
    output = server.log_path.read_bytes()
    assert not any(control in output for control in (b"\x1b", b"\x07", b"\r", b"\t"))
    lines = output.decode("ascii").splitlines()
    rejected = [line for line in lines if "rejected token" in line]
    assert len(rejected) == len(FORGERIES)
    for (_, _, logged), line in zip(FORGERIES, rejected, strict=True):
        assert logged in line, line
    # No line begins with what came after a line feed in the token.
    assert not any(line.startswith(("fak", "x...")) for line in lines)


def test_a_token_percent_encoded_in_the_referer_under_another_name_is_masked():
    secret = "".join(f"%{ord(c):02X}" for c in "anysecretwithoutaprefix")
    line = access_line(HTTP_REFERER=f"https://app.example/back?next=%2Fapi%3Ftoken%3D{secret}")
    assert "next=***" in line
    assert secret not in line
