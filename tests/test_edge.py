"""The WSGI edge around Flask, through the test client: head limits, request bodies, last resort.

The same layer runs under the real server; tests/test_web_process.py sends the raw bytes.
"""

import io
import logging
import socket
import sqlite3
import threading
import time
from contextlib import closing

import pytest
from werkzeug.exceptions import HTTPException
from werkzeug.test import EnvironBuilder

from api import errors, security
from api.web import edge, request_bodies, server

ENVELOPE = {"type", "content"}


def assert_refused_uncounted(response, status, hits, before):
    assert response.status_code == status
    assert response.get_json().keys() == ENVELOPE
    assert response.get_json()["type"] == "Error"
    assert response.headers["Content-Security-Policy"] == security.DATA_CSP
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Connection"] == "close"
    # Refused before Flask: neither a hit nor an error, like anything the server refuses.
    assert (hits(), hits("errors")) == before


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api?data=" + "a" * 4100, 414),
        ("/api/" + "b" * 4100, 414),
        # Decoded, this path is short; as sent, it is over the limit.
        ("/api/" + "%62" * 1400, 414),
    ],
)
def test_a_request_line_over_4_kib_gets_414(client, hits, path, status):
    before = hits(), hits("errors")
    assert_refused_uncounted(client.get(path), status, hits, before)


def test_a_request_line_at_the_limit_reaches_the_app(client, hits):
    # "GET " + target + " HTTP/1.1" is exactly 4094 bytes.
    target = "/api?data=1&pad=" + "x" * (4094 - len("GET  HTTP/1.1") - len("/api?data=1&pad="))
    assert client.get(target).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Big": "a" * 8200},
        {"Authorization": "Bearer " + "a" * 8190},
        {f"X-H{i}": "v" for i in range(99)},  # with Host and User-Agent, 101
    ],
    ids=["one header over 8 KiB", "a token over 8 KiB", "101 headers"],
)
def test_oversized_heads_get_431(client, hits, headers):
    before = hits(), hits("errors")
    assert_refused_uncounted(client.get("/api/pizza", headers=headers), 431, hits, before)


def test_a_header_line_at_the_limit_reaches_the_app(client):
    # "X-Big: " + value is exactly 8190 bytes.
    assert client.get("/api/pizza", headers={"X-Big": "a" * (8190 - 7)}).status_code == 200


def test_a_body_shorter_than_its_content_length_is_refused(client, hits):
    before = hits("errors")
    response = client.post(
        "/api",
        input_stream=io.BytesIO(b"data=pizza"),
        content_type="application/x-www-form-urlencoded",
        environ_overrides={"CONTENT_LENGTH": "100"},
    )
    assert response.status_code == 400
    assert response.get_json()["content"] == request_bodies.TRUNCATED
    assert hits("errors") == before + 1


def test_a_body_is_read_up_to_its_content_length_and_no_further(client):
    # Bytes past the declared length belong to the next request on the connection.
    response = client.post(
        "/api",
        input_stream=io.BytesIO(b"data=pizzaGET / HTTP/1.1\r\n\r\n"),
        content_type="application/x-www-form-urlencoded",
        environ_overrides={"CONTENT_LENGTH": "10"},
    )
    assert response.get_json() == {
        "type": "Pizza",
        "content": "There are 10 pizzas being made in the pizzeria",
    }


class StalledInput:
    """A body that never comes: a read blocks until the watchdog would end it, then ends."""

    def __init__(self, seconds):
        self.seconds = seconds

    def read(self, _size=-1):
        time.sleep(self.seconds)
        return b""


class DrippingInput:
    """A body that drips: each read waits ``seconds``, then brings one byte."""

    def __init__(self, seconds):
        self.seconds = seconds

    def read(self, _size=-1):
        time.sleep(self.seconds)
        return b"x"


def post_body(app, body, length=10):
    return app.test_client().post(
        "/api",
        input_stream=io.BytesIO(),
        content_type="application/x-www-form-urlencoded",
        environ_overrides={"CONTENT_LENGTH": str(length), "wsgi.input": body},
    )


def test_a_body_not_whole_by_the_deadline_is_a_408(make_app, hits):
    app = make_app(REQUEST_BODY_TIMEOUT=0.3)
    before = hits("errors")
    began = time.monotonic()
    response = post_body(app, DrippingInput(0.05), length=1000)
    assert response.status_code == 408
    assert response.get_json()["content"] == request_bodies.late_message(0.3)
    assert 0.3 <= time.monotonic() - began < 1
    assert hits("errors") == before + 1


def test_a_whole_body_read_after_the_deadline_is_still_served():
    """The deadline counts from the request, but a body that is already whole gets its grace:
    it is not refused for the time the app took before it read."""
    receiver = request_bodies.BodyReceiver(timeout=1, slots=1, readers=1, max_length=100)
    long_ago = time.monotonic() - 60
    assert receiver.receive(io.BytesIO(b"data=pizza"), 10, 0, long_ago) == b"data=pizza"


def test_a_stalled_body_cut_off_at_the_deadline_is_a_408(make_app):
    response = post_body(make_app(REQUEST_BODY_TIMEOUT=0.3), StalledInput(0.5))
    assert response.status_code == 408


def test_with_one_thread_a_slow_body_is_turned_away_after_its_grace(make_app, hits):
    """One thread has no slot to lend: the slow body is refused, the complete one is not."""
    app = make_app(WEB_THREADS=1)
    before = hits("errors")
    began = time.monotonic()
    response = post_body(app, DrippingInput(0.2))
    assert time.monotonic() - began < 1
    assert response.status_code == 503
    assert response.get_json()["content"] == request_bodies.TOO_MANY_SLOW_BODIES
    assert response.headers["Retry-After"] == str(errors.RETRY_AFTER_SECONDS)
    assert hits("errors") == before + 1
    whole = app.test_client().post("/api", data={"data": "pizza"})
    assert whole.get_json()["type"] == "Pizza"


def test_a_view_that_never_reads_its_body_does_not_wait_for_it(make_app):
    began = time.monotonic()
    response = (
        make_app()
        .test_client()
        .get(
            "/api/pizza",
            environ_overrides={"CONTENT_LENGTH": "10", "wsgi.input": StalledInput(5)},
        )
    )
    assert response.status_code == 200
    assert time.monotonic() - began < 1


@pytest.mark.parametrize(("threads", "slots", "readers"), [(1, 0, 1), (2, 1, 1), (4, 2, 3)])
def test_half_the_threads_wait_on_slow_bodies_and_one_more_reads(make_app, threads, slots, readers):
    receiver = make_app(WEB_THREADS=threads).wsgi_app.bodies
    assert (receiver.slots, request_bodies.readers_for(threads)) == (slots, readers)


def test_a_body_the_watchdog_cuts_off_is_a_408_however_late_its_request_reached_the_app():
    """The watchdog ends every read on a connection that has received nothing for the
    deadline, counted from the bytes' arrival, once any body is overdue; a request that
    reached the app later than its bytes arrived is then cut before its own deadline, and is
    still a stalled body (408), never a truncated one (400)."""
    receiver = request_bodies.BodyReceiver(timeout=1, slots=2, readers=3, max_length=100)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
        for client in clients:
            client.sendall(b"d")  # one byte of ten, then nothing
        served = [listener.accept()[0] for _ in clients]
        streams = [conn.makefile("rb", buffering=0) for conn in served]
        refusals = []

        def receive(stream):
            try:
                receiver.receive(stream, 10, port, time.monotonic())
            except HTTPException as refusal:
                refusals.append(refusal.code)

        first = threading.Thread(target=receive, args=(streams[0],))
        first.start()
        time.sleep(0.9)  # the second request reaches the app 0.9 s after its byte came
        receive(streams[1])
        first.join()
        for conn in [*clients, *served, *streams]:
            conn.close()
    assert refusals == [408, 408]


def test_when_every_reader_is_busy_a_body_is_turned_away():
    receiver = request_bodies.BodyReceiver(timeout=1, slots=1, readers=1, max_length=100)
    waiting = threading.Thread(
        target=receiver.receive, args=(DrippingInput(0.05), 10, 0, time.monotonic())
    )
    waiting.start()
    time.sleep(0.1)
    with pytest.raises(HTTPException) as refused:
        receiver.receive(io.BytesIO(b"data=pizza"), 10, 0, time.monotonic())
    waiting.join()
    assert refused.value.code == 503
    assert refused.value.description == request_bodies.TOO_MANY_SLOW_BODIES
    # The reader is free again once the slow body is in.
    assert receiver.receive(io.BytesIO(b"data=pizza"), 10, 0, time.monotonic()) == b"data=pizza"


def test_the_watchdog_allows_a_head_as_long_as_the_server_does():
    assert server.HEADER_READ_TIMEOUT_MS <= request_bodies.HEAD_SECONDS * 1000


def escape_from_the_app(app, where):
    """Make an exception escape the app: before Flask, or from a hook after count_hit ran."""
    if where == "before flask":

        def broken(environ, start_response):
            raise RuntimeError("escaped")

        app.wsgi_app.app = broken
    else:

        @app.after_request
        def broken_hook(response):
            raise RuntimeError("escaped")

        # Flask's handling of that error re-raises it, as it does under any test config.
        app.config["PROPAGATE_EXCEPTIONS"] = True


@pytest.mark.parametrize("where", ["before flask", "after count_hit"])
def test_an_exception_that_escapes_flask_is_a_counted_envelope_and_one_log_line(
    make_app, hits, caplog, where
):
    app = make_app()
    escape_from_the_app(app, where)
    before = hits(), hits("errors")
    with caplog.at_level(logging.DEBUG):
        response = app.test_client().get("/api?data=1")
    assert response.status_code == 500
    assert response.get_json() == {"type": "Error", "content": "Internal server error"}
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    # Counted once, like any request answered with an error: the hit, and the error.
    assert (hits(), hits("errors")) == (before[0] + 1, before[1] + 1)
    (record,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.exc_info is None
    message = record.getMessage()
    assert "\n" not in message
    assert message.startswith("RuntimeError escaped the app's error handlers at ")
    assert message.endswith("; answered 500")


@pytest.mark.parametrize("method", ["head", "options"])
def test_an_uncounted_request_that_escapes_stays_uncounted(make_app, hits, method):
    app = make_app()
    escape_from_the_app(app, "before flask")
    before = hits(), hits("errors")
    assert getattr(app.test_client(), method)("/api?data=1").status_code == 500
    assert (hits(), hits("errors")) == before


def test_a_failure_to_count_still_answers(make_app, database_path, caplog):
    app = make_app()
    escape_from_the_app(app, "before flask")
    with closing(sqlite3.connect(database_path)) as db:
        db.execute("DROP TABLE counters")
    response = app.test_client().get("/api?data=1")
    assert response.status_code == 500
    assert response.get_json()["type"] == "Error"
    assert "the request above could not be counted: OperationalError" in caplog.text


def test_the_edge_is_outermost(app):
    # ProxyFix and Flask inside it, so that it sees every request first and logs last.
    assert isinstance(app.wsgi_app, edge.Edge)


def test_answers_go_to_the_server_as_werkzeug_would_send_them(app):
    """Answers complete as they stand are handed over without a copy of their headers; one
    that needs fixing for the server still gets Werkzeug's fixes."""
    response_class = app.response_class
    environ = EnvironBuilder("/api").get_environ()

    complete = response_class('{"type": "Data"}', mimetype="application/json")
    assert complete.get_wsgi_headers(environ) is complete.headers
    assert complete.headers["Content-Length"] == "16"

    no_content = response_class(status=204, headers={"Content-Length": "5"})
    assert "Content-Length" not in no_content.get_wsgi_headers(environ)
    moved = response_class("", status=302, headers={"Location": "/café"})
    assert moved.get_wsgi_headers(environ)["Location"] == "/caf%C3%A9"
    unmeasured = response_class(["ab", "c"])
    assert unmeasured.get_wsgi_headers(environ)["Content-Length"] == "3"
    not_modified = response_class(status=304, headers={"Content-Length": "9"})
    assert "Content-Length" not in not_modified.get_wsgi_headers(environ)
