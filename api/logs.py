"""The app's own log (stderr) and the web server's (stdout): their format, and what every line
carries.

``LOG_FORMAT=text`` (the default) writes ``[time] LEVEL request-id logger: message``;
``LOG_FORMAT=json`` writes each line as one JSON object, ``{"time", "level", "logger",
"request_id", "message"}`` and ``"exception"`` with a traceback, as the access log does
(``api/web/access_log.py``). Every line of every logger in the process goes through one
handler, so a library's warning comes out in the same form, with the ID of the request it
belongs to (``api/web/request_ids.py``), and with what a request carried into it masked and
escaped (``api/web/masking.py``). granian's own lines (start, stop, workers) get a timestamp,
and in JSON mode the same object.
"""

import json
import logging
import sys
from datetime import UTC, datetime

from flask.logging import default_handler

from .config import require
from .web.masking import SafeMessageFilter
from .web.request_ids import CURRENT

FORMATS = ("text", "json")
TEXT = "[%(asctime)s] %(levelname)s %(request_id)s %(name)s: %(message)s"
TEXT_DATES = "%Y-%m-%d %H:%M:%S %z"


class RequestIdFilter(logging.Filter):
    """Puts the ID of the request being answered on each record, ``-`` outside one."""

    def filter(self, record):
        if not hasattr(record, "request_id"):
            record.request_id = CURRENT.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a record: its time (UTC), level, logger, request ID and message, and a
    traceback as one string; JSON's escaping keeps every record on one line."""

    def format(self, record):
        moment = datetime.fromtimestamp(record.created, UTC)
        document = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", None),
            "message": record.getMessage(),
        }
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, separators=(",", ":"))


def formatter(log_format):
    """The formatter for every line of the process."""
    if log_format == "json":
        return JsonFormatter()
    return logging.Formatter(TEXT, TEXT_DATES)


def init_app(app):
    """Send every logger's lines through one handler on stderr, in LOG_FORMAT, carrying the
    request ID and masked; the app's own logger at LOG_LEVEL. Each app built replaces the
    handler the last one installed: a process logs one way."""
    config = app.config
    require(config, "LOG_FORMAT", lambda value: value in FORMATS, "text or json")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(config["LOG_FORMAT"]))
    handler.addFilter(RequestIdFilter())
    handler.addFilter(SafeMessageFilter(config["TOKEN_PREFIX"]))
    handler.api_handler = True
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "api_handler", False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    if root.level > logging.WARNING or root.level == logging.NOTSET:
        root.setLevel(logging.WARNING)
    # The app's logger goes through the one handler, not Flask's own besides it.
    app.logger.removeHandler(default_handler)
    app.logger.setLevel(config["LOG_LEVEL"])
    # Also on the logger itself, for whatever else listens to it.
    SafeMessageFilter.guard(app.logger, config["TOKEN_PREFIX"])


def granian_config(config):
    """granian's logging, in LOG_FORMAT: its lines on stdout with a timestamp, or as JSON."""
    if config["LOG_FORMAT"] == "json":
        line = {"()": "api.logs.JsonFormatter"}
    else:
        line = {
            "()": "logging.Formatter",
            "fmt": "[%(asctime)s] %(levelname)s granian: %(message)s",
        }
        line["datefmt"] = TEXT_DATES
    stream = {"class": "logging.StreamHandler", "stream": "ext://sys.stdout"}
    return {
        "formatters": {"generic": line, "access": line},
        "handlers": {
            "console": {**stream, "formatter": "generic"},
            "access": {**stream, "formatter": "access"},
        },
    }
