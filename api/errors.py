"""The one place that decides what an error looks like, whichever path produced it.

Flask-RESTful replaces the app's exception handlers for its own routes, Flask-HTTPAuth has an
error callback of its own, Werkzeug routing and Flask-Limiter raise before any view runs, and
the edge (api/web/edge.py) refuses oversized request heads before Flask sees them. All of them
end in :func:`error_document`, so a client sees one shape for every error.
"""

import json
import sys
from dataclasses import dataclass

import sqlalchemy as sa
from flask import current_app, render_template, request
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.http import HTTP_STATUS_CODES

from . import metrics, policy


def json_body(document):
    """A JSON answer's text, as Flask-RESTful 0.3.10's ``output_json`` writes it when no
    RESTFUL_JSON settings are given: ``json.dumps`` and a newline. Every JSON answer, success
    or error, from the app or the edge, is written by this one function."""
    return json.dumps(document) + "\n"


@dataclass(frozen=True)
class Status:
    """One error status the service answers with."""

    #: What the envelope says when the code that failed gave no message of its own.
    message: str
    #: What it means to a client; the spec and /docs show it.
    description: str


# Every status the service answers with an error. Adding one here is all it takes for the
# app, the spec and the docs; 414 and 431 come from api/web/edge.py, before Flask.
STATUSES = {
    400: Status(
        "Bad request",
        "The request is malformed: no data named, a body that cannot be read, a token "
        "sent the wrong way, or a bad Host header.",
    ),
    401: Status(
        "Not authenticated",
        "The data is private and the request has no valid token: none, an unknown or revoked "
        "one, or one that expired (told so).",
    ),
    403: Status(
        "Forbidden",
        "The token is valid but not for this: it lacks the scope the message names.",
    ),
    404: Status("Not found", "No such data kind, or no such path."),
    405: Status(
        "Method not allowed",
        "The path exists but does not take this method; Allow lists the methods it takes.",
    ),
    408: Status(
        "Request timeout",
        "The whole request body did not arrive within REQUEST_BODY_TIMEOUT seconds (10 by "
        "default).",
    ),
    411: Status(
        "Length required",
        "The body came chunked (Transfer-Encoding); send it with a Content-Length instead.",
    ),
    413: Status(
        "Request body too large",
        "The request body is over the size limit (MAX_CONTENT_LENGTH, 64 KiB by default).",
    ),
    414: Status(
        "Request line too long",
        "The request line is over 4 KiB; refused before the request reaches the app, so it is "
        "not counted.",
    ),
    418: Status("I'm a teapot", "The teapot refuses to brew coffee."),
    429: Status(
        "Too many requests",
        "Too many requests from this address or token, or too many wrong tokens from this "
        "address; retry after Retry-After seconds.",
    ),
    431: Status(
        "Request header fields too large",
        "A header is over 8 KiB, or there are more than 100; refused before the request "
        "reaches the app, so it is not counted.",
    ),
    500: Status(
        "Internal server error",
        "A fault on the server's side. It is logged there; the answer never holds a traceback.",
    ),
    503: Status(
        "Service unavailable",
        "The database did not answer in time, or too many request bodies are arriving "
        "slowly; retry after Retry-After seconds.",
    ),
}

# The three shapes an error can take, and the media types of the two JSON ones.
ENVELOPE, PROBLEM, PAGE = "envelope", "problem", "page"
ENVELOPE_MIMETYPE = "application/json"
PROBLEM_MIMETYPE = "application/problem+json"

# Seconds a client should wait before retrying a 503: the database away, or too many slow
# request bodies.
RETRY_AFTER_SECONDS = 5


def wants_json():
    """Routes that answer with data answer errors in JSON. Elsewhere people in a browser get the
    HTML error page, and a client that asks for JSON rather than HTML gets JSON."""
    if policy.current().data:
        return True
    # Browsers name text/html first; a bare */* or no Accept at all ties, and the page wins.
    return request.accept_mimetypes.best_match(("text/html", "application/json")) == (
        "application/json"
    )


def error_shape():
    """Problem details for clients that name them in Accept, else the envelope or the page.

    Only an explicit ``application/problem+json`` counts: browsers accept ``*/*`` and keep
    the HTML page, and API clients that send no Accept keep the tutorial's envelope.
    """
    for mimetype, quality in request.accept_mimetypes:
        if quality > 0 and mimetype.lower() == PROBLEM_MIMETYPE:
            return PROBLEM
    return ENVELOPE if wants_json() else PAGE


def standard_message(status):
    """The short message for a status when the failing code gave none."""
    known = STATUSES.get(status)
    return known.message if known else HTTP_STATUS_CODES.get(status, "Error")


def error_document(status, message, shape=ENVELOPE):
    """The JSON body of an error: the tutorial's envelope, or RFC 9457 problem details."""
    if shape == PROBLEM:
        # "about:blank" says the status alone explains the problem, so the title is its name.
        return {
            "type": "about:blank",
            "title": HTTP_STATUS_CODES.get(status, "Error"),
            "status": status,
            "detail": message,
        }
    return {"type": "Error", "content": message}


def error_response(status, message=None, headers=(), description=None):
    """Render an error as the envelope, as problem details, or as error.html for pages."""
    message = message or standard_message(status)
    shape = error_shape()
    if shape == PAGE:
        page = render_template(
            "error.html",
            status=status,
            title=HTTP_STATUS_CODES.get(status, "Error"),
            message=description or message,
        )
        response = current_app.response_class(page, mimetype="text/html")
    else:
        # Serialised as Flask-RESTful serialises the answers that succeed, so that an error
        # reads {"type": "Error", "content": ...} like the tutorial's, not with sorted keys.
        response = current_app.response_class(
            json_body(error_document(status, message, shape)),
            mimetype=PROBLEM_MIMETYPE if shape == PROBLEM else ENVELOPE_MIMETYPE,
        )
    response.status_code = status
    # The same URL answers errors in a shape chosen by Accept, so caches must key on it.
    response.vary.add("Accept")
    for name, value in headers:
        response.headers[name] = value
    return response


def database_unavailable(e):
    """Whether an exception is the database failing us (answered 503), not a bug (500)."""
    return (
        isinstance(e, sa.exc.DBAPIError)
        and e.connection_invalidated
        or isinstance(e, sa.exc.OperationalError)
        # Every pooled connection stayed busy past the pool's timeout: overloaded, not broken.
        or isinstance(e, sa.exc.TimeoutError)
    )


def handle_exception(e):
    """Turn any exception into an error response, so that no traceback reaches a client."""
    if isinstance(e, InternalServerError) and database_unavailable(e.original_exception):
        # Raised outside the view, where Flask wraps what it caught in a 500: the error's
        # count in an after-request hook, when the database fails between it and the hit's.
        e = e.original_exception
    if isinstance(e, HTTPException):
        if e.code is None or e.code < 400:
            # Routing redirects (a missing trailing slash) are answers, not errors.
            return e.get_response()
        headers = [(k, v) for k, v in e.get_headers() if k.lower() != "content-type"]
        # A description passed when raising is meant for the client; the class default is
        # Werkzeug's long prose, which suits the HTML page but not the envelope.
        custom = vars(e).get("description")
        return error_response(e.code, custom, headers, description=e.description)
    if database_unavailable(e):
        current_app.logger.warning("database unavailable: %s", type(getattr(e, "orig", e)).__name__)
        metrics.database_error()
        return error_response(503, headers=[("Retry-After", str(RETRY_AFTER_SECONDS))])
    current_app.log_exception(sys.exc_info())
    return error_response(500)


def init_app(app):
    """Send every error outside Flask-RESTful's routes through the same function."""
    app.register_error_handler(Exception, handle_exception)
