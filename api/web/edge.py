"""The WSGI layer between the server and Flask: what every request meets before the app does.

It is plain WSGI, so it holds the same under granian, gunicorn or any other server:

1. **Request head limits.** A request line over 4 KiB is answered ``414``, a header over 8 KiB
   or more than 100 headers ``431``, and an X-Forwarded-* header that a trusted proxy sets
   but that arrived empty ``400``, in the envelope with the security headers. Such requests
   never reach Flask, so they are not hits. (The server bounds the head first: granian refuses
   a head over its buffer, and hyper more than 100 headers, with empty answers of its own.)
2. **Request bodies** the app may take get a ``wsgi.input`` that receives the whole body when
   the app first reads it: at once when it came with its request, in one of the slots for slow
   bodies when it is still arriving, within ``REQUEST_BODY_TIMEOUT`` in all
   (``api/web/request_bodies.py``).
3. **The app answers**; a small answer is collected into one bytes object, which granian sends
   in one piece instead of iterating.
4. **The access log** gets its line (``api/web/access_log.py``), after the app, so that the
   address it logs is the one ProxyFix trusted.

Should anything escape the app (which turns every error into an answer of its own), the client
still gets a ``500`` in the envelope, the request is counted like any other (its hit, when the
app failed before counting it, and its error: ``counting.count_unanswered``), and the app log
gets one line naming the exception and where it was raised, rather than a server's bare 500
and a traceback for every such request.
"""

import time
import traceback

from werkzeug.http import HTTP_STATUS_CODES

from .. import counting, errors, metrics, security
from ..config import require
from . import request_bodies, request_ids
from .access_log import AccessLog, request_target

# gunicorn's limits, which this service has always promised: a request line of 4094 bytes
# (without its CRLF), 100 header fields, each line "Name: value" up to 8190 bytes.
MAX_REQUEST_LINE = 4094
MAX_HEADERS = 100
MAX_HEADER_LINE = 8190

# A forwarded header from a trusted proxy that arrived empty: granian hands the app an empty
# value for a header that is not ASCII, and ProxyFix would then take the proxy itself for
# the client, putting it in the proxy's own rate-limit bucket and log lines.
UNREADABLE_FORWARDED = "A forwarded header from the proxy in front is empty or not ASCII"

# The WSGI names of the X-Forwarded-* headers, by their PROXY_FIX_X_* setting.
FORWARDED = {
    "FOR": "HTTP_X_FORWARDED_FOR",
    "PROTO": "HTTP_X_FORWARDED_PROTO",
    "HOST": "HTTP_X_FORWARDED_HOST",
    "PORT": "HTTP_X_FORWARDED_PORT",
    "PREFIX": "HTTP_X_FORWARDED_PREFIX",
}

# When the request reached the edge (time.perf_counter()), in its environ.
STARTED = "api.started"

# Answers up to this size are joined into one piece; bigger or unknown ones stream as they come.
COLLECT_UP_TO = 1024 * 1024


def refusal(status, message=None):
    """A complete WSGI answer for a request refused here: envelope, security headers, close."""
    document = errors.error_document(status, message or errors.standard_message(status))
    body = errors.json_body(document).encode()
    headers = [
        ("Content-Type", errors.ENVELOPE_MIMETYPE),
        ("Content-Length", str(len(body))),
        *security.DATA_HEADERS,
        ("Connection", "close"),
    ]
    return f"{status} {HTTP_STATUS_CODES[status]}", headers, body


def _path_length_at_most(environ):
    """An upper bound of the request target's length as sent: a decoded path character took at
    most three (``%XX``); the query string is passed on as sent."""
    query = environ.get("QUERY_STRING", "")
    return 3 * len(environ.get("PATH_INFO", "")) + (len(query) + 1 if query else 0)


def head_refusal(environ):
    """414 or 431 when the request's head breaks a limit, else None."""
    method = environ.get("REQUEST_METHOD", "")
    protocol = environ.get("SERVER_PROTOCOL", "")
    fixed = len(method) + len(protocol) + 2
    if fixed + _path_length_at_most(environ) > MAX_REQUEST_LINE:
        # Only long targets pay for rebuilding the target as it went on the wire.
        if fixed + len(request_target(environ)) > MAX_REQUEST_LINE:
            return 414
    count = 0
    for key, value in environ.items():
        if key[:5] == "HTTP_":
            name = len(key) - 5
        elif key == "CONTENT_TYPE" or key == "CONTENT_LENGTH":
            name = len(key)
        else:
            continue
        count += 1
        if type(value) is str and name + 2 + len(value) > MAX_HEADER_LINE:
            if _longest_line(name, value) > MAX_HEADER_LINE:
                return 431
    if count > MAX_HEADERS:
        return 431
    return None


def _longest_line(name, value):
    """The longest line a header's value may have come in. Servers join a header sent on
    several lines into one value with commas (granian with ``,``, gunicorn with ``, ``), and
    the app cannot tell those commas from the sender's own: each element is measured as a
    line of its own, and the joined value is bounded by the server's head buffer."""
    return name + 2 + max(len(element) for element in value.split(","))


def forwarded_refusal(environ, keys):
    """400 when a header a trusted proxy sets came empty (unreadable), else None."""
    for key in keys:
        value = environ.get(key)
        if value is not None and not value.strip():
            return 400
    return None


def raised_at(error):
    """``file:line`` of the innermost frame an exception passed through, for a one-line log."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return "?"
    frame = frames[-1]
    return f"{frame.filename}:{frame.lineno}"


class Edge:
    """Wraps Flask's ``wsgi_app``; see the module docstring for what it does, in order."""

    def __init__(self, flask_app, bodies, access_log=None):
        #: Whether an X-Request-ID a client sends is the trusted proxy's (request_ids.py).
        self.trust_request_id = flask_app.config["PROXY_FIX_X_FOR"] > 0
        #: Where answered requests are counted and timed, when metrics are on (api/metrics.py).
        self.metrics = metrics.instruments() if flask_app.config["METRICS_ENABLED"] else None
        #: The WSGI callable inside: ProxyFix, when configured, then Flask.
        self.app = flask_app.wsgi_app
        self.flask_app = flask_app
        self.bodies = bodies
        self.access_log = access_log
        self.refusals = {status: refusal(status) for status in (414, 431)}
        self.refusals[400] = refusal(400, UNREADABLE_FORWARDED)
        #: The X-Forwarded-* headers a trusted proxy sets, which must not arrive empty.
        self.forwarded = tuple(
            key for name, key in FORWARDED.items() if flask_app.config[f"PROXY_FIX_X_{name}"]
        )

    def __call__(self, environ, start_response):
        began = time.perf_counter()
        rid = environ[request_ids.ENVIRON_KEY] = request_ids.of(environ, self.trust_request_id)
        environ[STARTED] = began
        if self.metrics is not None:
            self.metrics.in_flight.inc()
        refused = head_refusal(environ)
        if refused is None and self.forwarded:
            refused = forwarded_refusal(environ, self.forwarded)
        if refused is not None:
            status, headers, body = self.refusals[refused]
            start_response(status, [*headers, (request_ids.HEADER, rid)])
            self.log(environ, refused, len(body))
            return [body]
        if "CONTENT_LENGTH" in environ:
            self.bodies.wrap(environ)

        # The status, the Content-Length header's value, and whether the app started an answer.
        answer = [500, None, False]

        def start(status, headers, exc_info=None):
            answer[0] = int(status[:3])
            answer[2] = True
            for name, value in headers:
                if name == "Content-Length":
                    answer[1] = value
                    break
            headers.append((request_ids.HEADER, rid))
            return start_response(status, headers, exc_info)

        # The app's log lines carry the ID while the app runs (api/logs.py).
        context = request_ids.CURRENT.set(rid)
        try:
            iterable = self.app(environ, start)
        except Exception as error:
            # The app had started its answer: too late for another one.
            too_late = answer[2]
            self.flask_app.logger.error(
                "%s escaped the app's error handlers at %s; %s",
                type(error).__name__,
                raised_at(error),
                "its answer had begun" if too_late else "answered 500",
            )
            if too_late:
                if self.metrics is not None:
                    self.metrics.in_flight.dec()
                raise
            self.count_unanswered(environ)
            status, headers, body = refusal(500)
            start_response(status, [*headers, (request_ids.HEADER, rid)])
            self.log(environ, 500, len(body))
            return [body]
        finally:
            request_ids.CURRENT.reset(context)

        length = answer[1]
        if length is not None and length.isdigit() and int(length) <= COLLECT_UP_TO:
            try:
                body = b"".join(iterable)
            finally:
                close = getattr(iterable, "close", None)
                if close is not None:
                    close()
            self.log(environ, answer[0], len(body))
            return [body]
        return LoggedIterable(iterable, self, environ, answer)

    def count_unanswered(self, environ):
        """Count the request the app failed to answer, in a request context of its own: the
        app's was torn down with the exception. Counting must not turn one failure into two."""
        try:
            with self.flask_app.request_context(environ):
                counting.count_unanswered()
        except Exception as error:
            self.flask_app.logger.error(
                "the request above could not be counted: %s", type(error).__name__
            )

    def log(self, environ, status, size):
        """The request is answered: its access line, and its count and time in the metrics,
        with the time it took from its arrival here."""
        seconds = time.perf_counter() - environ[STARTED]
        if self.metrics is not None:
            self.metrics.in_flight.dec()
            route = environ.get(metrics.ROUTE, "edge")
            self.metrics.answered(route, environ.get("REQUEST_METHOD", ""), status, seconds)
        if self.access_log is not None:
            self.access_log.log(environ, status, size, seconds)


class LoggedIterable:
    """A streamed answer: its bytes are counted as they go, and the line is logged at close."""

    def __init__(self, iterable, edge, environ, answer):
        self._iterable = iterable
        self._edge = edge
        self._environ = environ
        self._answer = answer
        self._sent = 0

    def __iter__(self):
        for chunk in self._iterable:
            self._sent += len(chunk)
            yield chunk

    def close(self):
        try:
            close = getattr(self._iterable, "close", None)
            if close is not None:
                close()
        finally:
            self._edge.log(self._environ, self._answer[0], self._sent)


def init_app(app):
    """Put the edge around everything else the app's WSGI callable does, ProxyFix included."""
    config = app.config
    require(config, "WEB_THREADS", lambda n: n >= 1, "1 or more")
    require(config, "REQUEST_BODY_TIMEOUT", lambda s: s > 0, "more than 0 seconds")
    # Half the threads may wait on slow bodies (none of one), and one more may read a body.
    threads = config["WEB_THREADS"]
    bodies = request_bodies.BodyReceiver(
        config["REQUEST_BODY_TIMEOUT"],
        slots=threads // 2,
        readers=request_bodies.readers_for(threads),
        max_length=config["MAX_CONTENT_LENGTH"],
    )
    access_log = None
    if config["ACCESS_LOG"]:
        access_log = AccessLog(config["TOKEN_PREFIX"], json_lines=config["LOG_FORMAT"] == "json")
    app.wsgi_app = Edge(app, bodies, access_log)
