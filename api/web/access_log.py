"""The access log, written by the app itself, and the masking that keeps secrets out of every log.

One line per answered request, in the combined format most log tools parse (gunicorn's and
Apache's default)::

    203.0.113.7 - - [01/Dec/2026:05:30:00 +0000] "GET /api?data=hits HTTP/1.1" 200 38 "-" "curl/8.5"

Whatever the server, the line is the same, because the app writes it (``api/web/edge.py`` calls
:meth:`AccessLog.log` once the app has answered). Three rules hold for every line:

- **No secret.** A ``token`` parameter's value in the request target or the Referer, and
  anything shaped like one of this server's tokens anywhere in the line, read ``***``. The
  ``Authorization`` header is never logged.
- **One request, one line.** Text the client controls (target, Referer, User-Agent, and the
  address a trusted proxy passed on) is escaped as nginx's ``escape=default`` does: ``"`` and
  ``\\`` get a backslash, control characters and anything outside printable ASCII become
  ``\\xHH``. So no client can end a field early, forge a status, or start a new line.
- **Whole lines.** Each line goes to standard output in a single ``write()``, and long fields
  are cut so that a line stays under ``PIPE_BUF`` (4 KiB): the kernel then never interleaves
  the lines of two worker processes sharing one pipe.

It writes with ``os.write`` rather than the ``logging`` module, which costs about 10 us a line
more: on a small API request that is several per cent of the whole answer (BENCHMARKS.md).
"""

import logging
import os
import re
import time
from urllib.parse import quote, unquote_plus

MASK = "***"

# One query parameter: its name and, when present, the value after "=". A name stops at "?",
# so that a URL starting with its path ("/api?token=...") still has its parameters found; a
# value stops at a quote, which in a log line closes the quoted URL.
_PARAM = re.compile(r"(?P<sep>^|[?&;])(?P<name>[^=&;#?\s]*)(?P<value>=[^&;#\s\"']*)?")

# The credentials of an Authorization header quoted in a message.
_CREDENTIALS = re.compile(r"(?i)\b(?P<scheme>bearer|basic)(?P<space>\s+)[^\s'\",;]+")

# What needs escaping in a logged field: anything but printable ASCII, the quote that closes
# the field, and the backslash that escapes.
_UNSAFE = re.compile(r"[^\x20-\x21\x23-\x5b\x5d-\x7e]")

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


# How many layers of percent-encoding a parameter's value is decoded through when looking for
# a token inside it (a URL in ``next=`` holding a URL in its own ``next=``, and so on).
DECODE_LAYERS = 4


def mask_tokens(text, tokens_like=None):
    """Replace the value of every ``token`` parameter in a URL or query string, and the whole
    value of any parameter that, percent-decoded, holds one (``next=%2Fapi%3Ftoken%3D...``)
    or, given ``tokens_like``, anything shaped like a token."""
    if not text or "=" not in text:
        return text

    def replace(match):
        value = match.group("value")
        if not value:
            return match.group(0)
        if unquote_plus(match.group("name")).strip().lower() == "token" or (
            "%" in value and _hides_a_token(value[1:], tokens_like)
        ):
            return f"{match.group('sep')}{match.group('name')}={MASK}"
        return match.group(0)

    return _PARAM.sub(replace, text)


def _hides_a_token(value, tokens_like):
    """Whether a percent-encoded value, decoded layer by layer, holds a token parameter or a
    token-shaped string."""
    for _ in range(DECODE_LAYERS):
        decoded = unquote_plus(value)
        if decoded == value:
            return False
        value = decoded
        if mask_tokens(value) != value or (tokens_like and tokens_like.search(value)):
            return True
    return False


def may_hold_token_parameter(text):
    """A cheap test that lets most lines skip :func:`mask_tokens`: a parameter can only be
    named ``token`` if its name spells it or is percent-encoded."""
    return "=" in text and ("%" in text or "oken" in text.lower())


def token_pattern(prefix):
    """Anything shaped like one of this server's tokens, wherever it appears in a line."""
    return re.compile(re.escape(prefix) + r"[A-Za-z0-9_-]{8,}")


def mask_secrets(text, tokens_like):
    """Mask token parameters, Authorization credentials and token-shaped strings in a line."""
    text = mask_tokens(text, tokens_like)
    text = _CREDENTIALS.sub(lambda m: f"{m.group('scheme')}{m.group('space')}{MASK}", text)
    return tokens_like.sub(MASK, text)


def _escape_one(match):
    char = match.group(0)
    if char in '"\\':
        return "\\" + char
    # WSGI text is bytes read as latin-1, so a character below 256 stands for that byte.
    if ord(char) < 256:
        return f"\\x{ord(char):02X}"
    return "".join(f"\\x{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))


def escape(text):
    """Request-controlled text made safe for a one-line, quoted log field."""
    if _UNSAFE.search(text) is None:
        return text
    return _UNSAFE.sub(_escape_one, text)


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

    def __init__(self, token_prefix, write=None):
        self.token_prefix = token_prefix
        self.tokens_like = token_pattern(token_prefix)
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

    def line(self, environ, status, size):
        """The access line for one request, masked and escaped, without its newline."""
        target = request_target(environ)
        if may_hold_token_parameter(target):
            target = mask_tokens(target, self.tokens_like)
        referer = environ.get("HTTP_REFERER")
        if referer is None:
            referer = "-"
        elif may_hold_token_parameter(referer):
            referer = mask_tokens(referer, self.tokens_like)
        agent = environ.get("HTTP_USER_AGENT", "-")
        line = (
            f"{logged_address(environ)} - - {self.timestamp()} "
            f'"{escape(environ.get("REQUEST_METHOD", "-"))} '
            f"{_cut(escape(target), TARGET_CHARS)} "
            f'{protocol(environ)}" {status} {size} '
            f'"{_cut(escape(referer), HEADER_CHARS)}" "{_cut(escape(agent), HEADER_CHARS)}"'
        )
        if self.token_prefix in line:
            line = self.tokens_like.sub(MASK, line)
        return line

    def log(self, environ, status, size):
        """Write one request's line; a log that cannot be written never fails the request."""
        try:
            self.write((self.line(environ, status, size) + "\n").encode("ascii", "replace"))
        except Exception:  # noqa: BLE001 - the answer is sent already; the line is what is lost
            logging.getLogger(__name__).warning("access log line could not be written")


def _write_stdout(data):
    os.write(1, data)


class SafeMessageFilter(logging.Filter):
    """Rewrites each record's message for the app's own log: every secret masked, and the rest
    escaped as the access log's fields are, so that text a request carried into a message (a
    rejected token, a path) can neither start a forged line nor move a terminal's cursor.

    Our own messages are printable ASCII, so escaping touches only what came from a request.
    A traceback the record carries is formatted after this, and stays as Python wrote it.
    """

    def __init__(self, prefix):
        super().__init__()
        self.prefix = prefix
        self.tokens_like = token_pattern(prefix)

    @classmethod
    def guard(cls, logger, prefix):
        """Add the filter for ``prefix`` to a logger, once: every app a process builds logs
        through the same "api" logger, and a filter added per app would run once per app."""
        if not any(isinstance(f, cls) and f.prefix == prefix for f in logger.filters):
            logger.addFilter(cls(prefix))

    def filter(self, record):
        message = record.getMessage()
        safe = mask_secrets(message, self.tokens_like)
        # Every app in a process logs through the one "api" logger and adds its filter to it,
        # so a record may pass several: masking twice changes nothing, escaping twice would
        # double every backslash.
        if not getattr(record, "escaped", False):
            safe = escape(safe)
            record.escaped = True
        if safe != message:
            record.msg, record.args = safe, ()
        return True
