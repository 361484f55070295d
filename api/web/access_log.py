"""The access log, written by the app itself: one line per answered request.

In the default text format the line is the combined format most log tools parse (gunicorn's
and Apache's default), followed by the seconds the request took and its request ID (one line,
here broken in two)::

    203.0.113.7 - - [01/Dec/2026:05:30:00 +0000] "GET /api?data=hits HTTP/1.1" 200 38 "-"
    "curl/8.5" 0.0021 5f0c8a1e9b2d4c7f

With ``LOG_FORMAT=json`` it is one JSON object instead, with the same facts and a timestamp
(``api/logs.py`` writes the app log the same way). Whatever the server, the line is the same,
because the app writes it (``api/web/edge.py`` calls :meth:`AccessLog.log` once the app has
answered). Three rules hold for every line:

- **No secret**, and **one request, one line** (``masking.py``): a token never appears, and
  text the client controls is escaped (or, in JSON, encoded) so that it cannot end a field or
  start a line.
- **Whole lines.** Each line goes to standard output in a single ``write()``, and long fields
  are cut so that a line stays under ``PIPE_BUF`` (4 KiB): the kernel then never interleaves
  the lines of two worker processes sharing one pipe.

It writes with ``os.write`` rather than the ``logging`` module, which costs about 16 µs a line
more: on a small API request that is several per cent of the whole answer (BENCHMARKS.md).
"""

import json
import logging
import os
import re
import time
from datetime import UTC, datetime
from urllib.parse import quote

from .masking import MASK, escape, mask_tokens, may_hold_token_parameter, token_pattern
from .request_ids import ENVIRON_KEY

# An IPv4 or IPv6 address, as a server or a proxy writes it: logged as it is.
_PLAIN_ADDRESS = re.compile(r"[0-9A-Fa-f.:]{1,45}")

# Longest logged request target, Referer and User-Agent, in characters after escaping. With
# the fixed parts of a line that keeps every line under PIPE_BUF (4096 bytes).
TARGET_CHARS = 2048

HEADER_CHARS = 512

CUT = "..."

# What a path keeps unencoded when the server hands over a decoded one (RFC 3986 pchar and "/").
_PATH_SAFE = "/:@!$&'()*+,;=-._~"

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _cut(text, limit):
    """At most ``limit`` characters, marked when something was cut, never mid-escape."""
    if len(text) <= limit:
        return text
    text = text[: limit - len(CUT)]
    # Drop a partial escape sequence at the end ("\x4" or a lone backslash).
    tail = text[-4:]
    backslash = tail.rfind("\\")
    if backslash != -1:
        text = text[: len(text) - len(tail) + backslash]
    return text + CUT


def logged_address(environ):
    """The address field: what ProxyFix trusted, which behind a proxy is whatever the client
    wrote in X-Forwarded-For but a comma; escaped, spaces too, since the field is unquoted."""
    address = environ.get("REMOTE_ADDR") or "-"
    if _PLAIN_ADDRESS.fullmatch(address):
        return address
    return escape(address).replace(" ", "\\x20")


def request_target(environ):
    """The target of the request line as the client sent it where the server kept it (gunicorn's
    RAW_URI), or else rebuilt from the decoded path and the raw query string."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        return raw
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    # WSGI paths are bytes decoded as latin-1; percent-encode them back into a URL.
    target = quote(path.encode("latin-1", "backslashreplace"), safe=_PATH_SAFE) or "/"
    query = environ.get("QUERY_STRING")
    return f"{target}?{query}" if query else target


def protocol(environ):
    """The request line's protocol as sent: granian names HTTP/1.0 ``HTTP/1``."""
    name = environ.get("SERVER_PROTOCOL", "-")
    return "HTTP/1.0" if name == "HTTP/1" else escape(name)


class AccessLog:
    """Writes the access line for each answered request; one per process, shared by threads."""

    def __init__(self, token_prefix, json_lines=False, write=None):
        self.token_prefix = token_prefix
        self.tokens_like = token_pattern(token_prefix)
        self.json_lines = json_lines
        # The line's destination: standard output unless a test passes a function of its own.
        self.write = write or _write_stdout
        self._second = None
        self._stamp = ""

    def timestamp(self):
        """``[01/Dec/2026:05:30:00 +0000]``, in UTC, built once per second."""
        second = int(time.time())
        if second != self._second:
            t = time.gmtime(second)
            self._stamp = (
                f"[{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:"
                f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000]"
            )
            self._second = second
        return self._stamp

    def _masked(self, environ):
        """The request target and Referer with every token parameter masked."""
        target = request_target(environ)
        if may_hold_token_parameter(target):
            target = mask_tokens(target, self.tokens_like)
        referer = environ.get("HTTP_REFERER")
        if referer is not None and may_hold_token_parameter(referer):
            referer = mask_tokens(referer, self.tokens_like)
        return target, referer

    def line(self, environ, status, size, seconds=0.0):
        """The access line for one request, masked and escaped, without its newline."""
        if self.json_lines:
            return self.json_line(environ, status, size, seconds)
        target, referer = self._masked(environ)
        agent = environ.get("HTTP_USER_AGENT", "-")
        line = (
            f"{logged_address(environ)} - - {self.timestamp()} "
            f'"{escape(environ.get("REQUEST_METHOD", "-"))} '
            f"{_cut(escape(target), TARGET_CHARS)} "
            f'{protocol(environ)}" {status} {size} '
            f'"{_cut(escape(referer or "-"), HEADER_CHARS)}" "{_cut(escape(agent), HEADER_CHARS)}" '
            f"{seconds:.4f} {escape(environ.get(ENVIRON_KEY, '-'))}"
        )
        if self.token_prefix in line:
            line = self.tokens_like.sub(MASK, line)
        return line

    def json_line(self, environ, status, size, seconds):
        """The same facts as one JSON object; JSON's own escaping keeps it on one line."""
        target, referer = self._masked(environ)
        line = json.dumps(
            {
                "time": iso_now(),
                "level": "INFO",
                "logger": "access",
                "request_id": environ.get(ENVIRON_KEY),
                "remote_addr": environ.get("REMOTE_ADDR"),
                "method": environ.get("REQUEST_METHOD"),
                "target": target[:TARGET_CHARS],
                "protocol": protocol(environ),
                "status": status,
                "size": size,
                "duration_ms": round(seconds * 1000, 3),
                "referer": referer and referer[:HEADER_CHARS],
                "user_agent": environ.get("HTTP_USER_AGENT", "")[:HEADER_CHARS] or None,
            },
            separators=(",", ":"),
        )
        if self.token_prefix in line:
            line = self.tokens_like.sub(MASK, line)
        return line

    def log(self, environ, status, size, seconds=0.0):
        """Write one request's line; a log that cannot be written never fails the request."""
        try:
            line = self.line(environ, status, size, seconds)
            self.write((line + "\n").encode("ascii", "replace"))
        except Exception:  # noqa: BLE001 - the answer is sent already; the line is what is lost
            logging.getLogger(__name__).warning("access log line could not be written")


def iso_now():
    """Now in UTC, as ISO 8601 to the millisecond: what a log platform parses as a timestamp."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _write_stdout(data):
    os.write(1, data)
