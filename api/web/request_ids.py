"""Request IDs: one per request, sent back in ``X-Request-ID`` and written on its access line
and on every app log line it causes, so that a client's report finds its lines.

Behind a trusted proxy (``PROXY_FIX_X_FOR`` of 1 or more), the ID the proxy sent is kept, as
Heroku's router sends one with every request, so that the router's log and this service's
agree; it must be 1 to 200 characters of letters, digits and ``._:+/=@-``, or a new one is
made. Anywhere else the client could choose it, so a new one is always made.
"""

import contextvars
import os
import re

HEADER = "X-Request-ID"
# Where a request's ID is kept: its WSGI environ, and, while the app runs, the context the app
# log reads it from (api/logs.py).
ENVIRON_KEY = "api.request_id"
CURRENT = contextvars.ContextVar("request_id", default=None)

ACCEPTED = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+/=@-]{0,199}")


def new():
    """128 random bits as 32 hex characters: unique across every dyno, for all practical use."""
    return os.urandom(16).hex()


def of(environ, trust_inbound):
    """The request's ID: the proxy's, where one is trusted and well formed, else a new one."""
    if trust_inbound:
        sent = environ.get("HTTP_X_REQUEST_ID")
        if sent and ACCEPTED.fullmatch(sent):
            return sent
    return new()
