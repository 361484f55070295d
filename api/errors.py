"""The one place that decides what an error looks like, whichever path produced it.

Flask-RESTful replaces the app's exception handlers for its own routes, Flask-HTTPAuth has an
error callback of its own, and Werkzeug routing raises before any view runs. All of them end
in :func:`error_response`, so a client sees one shape for every error.
"""

import sys

import sqlalchemy as sa
from flask import current_app, jsonify, render_template, request
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

# Short messages for the envelope when the code that failed gave none of its own.
STANDARD_MESSAGES = {
    400: "Bad request",
    401: "Not authenticated",
    404: "Not found",
    405: "Method not allowed",
    413: "Request body too large",
    418: "I'm a teapot",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}

# Seconds a client should wait before retrying while the database is away.
RETRY_AFTER_SECONDS = 5

JSON_PATHS = ("/api", "/healthz")


def wants_json():
    """API clients get JSON errors; people in a browser get the HTML error page."""
    path = request.path
    return any(path == p or path.startswith(p + "/") for p in JSON_PATHS)


def error_response(status, message=None, headers=(), description=None):
    """Render an error as the envelope for the API or as error.html for pages."""
    message = message or STANDARD_MESSAGES.get(status) or HTTP_STATUS_CODES.get(status, "Error")
    if wants_json():
        response = jsonify(type="Error", content=message)
    else:
        page = render_template(
            "error.html",
            status=status,
            title=HTTP_STATUS_CODES.get(status, "Error"),
            message=description or message,
        )
        response = current_app.response_class(page, mimetype="text/html")
    response.status_code = status
    for name, value in headers:
        response.headers[name] = value
    return response


def handle_exception(e):
    """Turn any exception into an error response, so that no traceback reaches a client."""
    if isinstance(e, HTTPException):
        if e.code is None or e.code < 400:
            # Routing redirects (a missing trailing slash) are answers, not errors.
            return e.get_response()
        headers = [(k, v) for k, v in e.get_headers() if k.lower() != "content-type"]
        # A description passed when raising is meant for the client; the class default is
        # Werkzeug's long prose, which suits the HTML page but not the envelope.
        custom = vars(e).get("description")
        return error_response(e.code, custom, headers, description=e.description)
    if (
        isinstance(e, sa.exc.DBAPIError)
        and e.connection_invalidated
        or isinstance(e, sa.exc.OperationalError)
        # Every pooled connection stayed busy past the pool's timeout: overloaded, not broken.
        or isinstance(e, sa.exc.TimeoutError)
    ):
        current_app.logger.warning("database unavailable: %s", type(getattr(e, "orig", e)).__name__)
        return error_response(503, headers=[("Retry-After", str(RETRY_AFTER_SECONDS))])
    current_app.log_exception(sys.exc_info())
    return error_response(500)


def init_app(app):
    """Send every error outside Flask-RESTful's routes through the same function."""
    app.register_error_handler(Exception, handle_exception)
