"""Clients for real servers: plain GETs, load from many threads, raw bytes on a socket. The
servers themselves come from harness/servers.py, which the bench shares."""

import http.client
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from typing import NamedTuple

from harness.servers import (  # noqa: F401 - the suite's one place for both
    BIN,
    ROOT,
    Server,
    clean_env,
    free_port,
    mint_token,
    procfile_command,
    run_release,
    serve_released,
    wait_until,
)

from . import spec_check


class Answer(NamedTuple):
    """What a client got: status None means no answer at all (refused, reset, timed out)."""

    status: int | None
    body: bytes = b""
    retry_after: str | None = None


def exchange(port, data, half_close=False, timeout=15):
    """Send raw bytes and return the server's first answer, read up to its Content-Length or
    to the end of the connection. A half-close ends a body early; hyper, like most servers,
    drops a connection whose client half-closes after a whole request, so only tests of
    cut-off bodies use it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(data)
        if half_close:
            conn.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
            head, found, body = answer.partition(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length: *(\d+)", head)
            if found and length and len(body) >= int(length.group(1)):
                break
    return answer


def parse_answer(answer):
    """(status, headers with lowercase names, body) of a raw answer; (None, {}, b"") for none."""
    if not answer:
        return None, {}, b""
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split(" ", 2)[1]), headers, body


def fetch(url, headers=None, timeout=30, method="GET"):
    """GET url (or another method); any HTTP status is an answer, only a failed connection is
    not. Every answer is checked against the spec of a server with the default settings
    (tests/spec_check.py)."""
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            answer = Answer(r.status, r.read(), r.headers.get("Retry-After"))
            received = r.headers
    except urllib.error.HTTPError as e:
        with e:
            answer = Answer(e.code, e.read(), e.headers.get("Retry-After"))
            received = e.headers
    except (urllib.error.URLError, http.client.HTTPException, OSError):
        return Answer(None)
    spec_check.default().check(method, url, answer.status, list(received.items()), answer.body)
    return answer


class Load:
    """Clients sending GETs in a loop, round-robin over URLs, keeping every answer in order."""

    def __init__(self, urls, clients=8):
        self.urls = list(urls)
        self.answers = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(clients)]

    def _run(self, offset):
        n = offset
        while not self._stop.is_set():
            self.answers.append(fetch(self.urls[n % len(self.urls)]))
            n += 1

    def wait_for(self, more, status=200, timeout=60):
        """Block until `more` further answers with this status have arrived."""
        target = self.count(status) + more
        deadline = time.monotonic() + timeout
        while self.count(status) < target:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {self.count(status)} of {target} answers were {status}")
            time.sleep(0.01)

    def count(self, status):
        return sum(1 for a in list(self.answers) if a.status == status)

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        """Stop sending and wait for the requests in flight to finish."""
        self._stop.set()
        for thread in self._threads:
            thread.join()
