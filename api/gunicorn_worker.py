"""gunicorn's gthread worker, answering malformed HTTP in the API's error shape.

gunicorn refuses a request line over ``limit_request_line``, oversized or invalid headers and
bytes that are not HTTP at all before the app sees a request, and answers those with an HTML
page of its own. This worker keeps gunicorn's choice of status and its log line, and sends the
envelope instead. Such requests never reach the app, so they are not hits.
"""

import json

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker
from werkzeug.http import HTTP_STATUS_CODES

from . import errors, security


class CapturedReply:
    """Stands in for the client socket while gunicorn writes its own error reply."""

    def __init__(self):
        self.data = b""

    def gettimeout(self):
        # Non-blocking already, so gunicorn writes straight to sendall().
        return 0.0

    def sendall(self, data):
        self.data += data

    def status(self):
        """The status gunicorn chose, or None when it wrote nothing."""
        parts = self.data.split(b"\r\n", 1)[0].split()
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def error_reply(status):
    """A complete HTTP response carrying the envelope, with the headers every answer has."""
    document = errors.error_document(status, errors.standard_message(status))
    body = (json.dumps(document) + "\n").encode()
    lines = [
        f"HTTP/1.1 {status} {HTTP_STATUS_CODES.get(status, 'Error')}",
        "Connection: close",
        f"Content-Type: {errors.ENVELOPE_MIMETYPE}",
        f"Content-Length: {len(body)}",
        *(f"{name}: {value}" for name, value in security.ALWAYS),
        f"Content-Security-Policy: {security.DATA_CSP}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class EnvelopeErrorWorker(ThreadWorker):
    """gthread, with gunicorn's own error replies in the envelope."""

    def handle_error(self, req, client, addr, exc):
        reply = CapturedReply()
        super().handle_error(req, reply, addr, exc)
        status = reply.status()
        if status is None:
            return
        try:
            util.write_nonblock(client, error_reply(status))
        except OSError:
            self.log.debug("Failed to send error message.")
