"""A token never reaches a log or an error page, however a client sends it."""

import base64
import logging
import re
import socket
import urllib.error
import urllib.request
from datetime import timedelta
from types import SimpleNamespace

import pytest
from gunicorn.config import Config
from gunicorn.glogging import Logger

from api import access_log

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
        ("rejected token rapi_ab12… from 10.0.0.1", "rejected token rapi_ab12… from 10.0.0.1"),
    ],
)
def test_mask_secrets(line, masked):
    assert access_log.mask_secrets(line, access_log.token_pattern(PREFIX)) == masked


def test_error_log_filter_masks_formatted_messages(caplog):
    logger = logging.getLogger("test.gunicorn.error")
    logger.addFilter(access_log.SecretMaskingFilter(PREFIX))
    with caplog.at_level(logging.WARNING, logger="test.gunicorn.error"):
        logger.warning("Invalid request: %r", f"GET /api?token={SHAPED}")
    assert SHAPED not in caplog.text
    assert "token=***" in caplog.text


# The access log line, as gunicorn's worker asks for it.


@pytest.fixture
def access_line(tmp_path):
    """The line a logger of the given class writes for one 200 with a 12-byte body."""
    lines = iter(range(100))

    def log(cls, environ, access_format=None):
        path = tmp_path / f"access-{next(lines)}.log"
        cfg = Config()
        cfg.set("accesslog", str(path))
        if access_format:
            cfg.set("access_log_format", access_format)
        logger = cls(cfg)
        response = SimpleNamespace(status="200 OK", sent=12, headers=[("Content-Length", "12")])
        request = SimpleNamespace(headers=[("HOST", "example.test")])
        base = {"REQUEST_METHOD": "GET", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "10.0.0.1"}
        try:
            logger.access(response, request, {**base, **environ}, timedelta(microseconds=900))
        finally:
            # gunicorn's loggers are process-wide; close this one's file before the next.
            for handler in logger.access_log.handlers:
                handler.close()
        return path.read_text()

    return log


def without_time(line):
    return re.sub(r"\[[^]]*\]", "[time]", line)


def test_default_access_line_is_gunicorns_own_line(access_line):
    environ = {
        "RAW_URI": "/api?data=hits",
        "HTTP_REFERER": "http://a.test/",
        "HTTP_USER_AGENT": "c",
    }
    ours = without_time(access_line(access_log.TokenMaskingLogger, environ))
    assert ours == without_time(access_line(Logger, environ))
    assert ours == '10.0.0.1 - - [time] "GET /api?data=hits HTTP/1.1" 200 12 "http://a.test/" "c"\n'


@pytest.mark.parametrize("access_format", [None, '%(r)s %(q)s %({authorization}i)s "%(a)s"'])
def test_access_lines_mask_every_secret(access_line, access_format):
    """The default format's own path, and gunicorn's path for any other format."""
    basic = base64.b64encode(f"{SHAPED}:x".encode()).decode()
    environ = {
        "RAW_URI": "/api?data=errors&token=hunter2",
        "QUERY_STRING": "data=errors&token=hunter2",
        "HTTP_REFERER": "https://a.test/?token=hunter3",
        "HTTP_USER_AGENT": f"agent {SHAPED}",
        "HTTP_AUTHORIZATION": f"Basic {basic}",
    }
    line = access_line(access_log.TokenMaskingLogger, environ, access_format)
    assert "token=***" in line
    for secret in ("hunter2", "hunter3", SHAPED, basic):
        assert secret not in line


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


# Every atom gunicorn has that could hold a URL or a credential, in one access log line.
EVERYTHING_FORMAT = (
    '%(h)s %(u)s "%(r)s" %(s)s "%(f)s" "%(a)s" q=%(q)s U=%(U)s '
    "auth=%({authorization}i)s raw=%({raw_uri}e)s qs=%({query_string}e)s"
)


@pytest.mark.server
def test_a_token_never_reaches_any_server_output(start_server, tmp_path):
    url = f"sqlite:///{tmp_path}/logs.sqlite3"
    env = servers.clean_env(DATABASE_URL=url)
    servers.run_release(env)
    secret = servers.mint_token(env, "log-test")
    server = start_server(
        url,
        LOG_LEVEL="DEBUG",
        GUNICORN_CMD_ARGS=f"--log-level debug --access-logformat '{EVERYTHING_FORMAT}'",
    )
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

    # Malformed HTTP, which gunicorn quotes in its error log.
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
    assert "auth=***" in output
    assert re.search(r"^127\.0\.0\.1 \*\*\* ", output, re.M), "Basic user name not masked"
    assert "rejected token rapi_" in output
    assert "Invalid request from ip=127.0.0.1" in output
    # ... and no part of the secret past its prefix appears anywhere.
    assert secret not in output
    assert secret[len(PREFIX) : len(PREFIX) + 12] not in output
