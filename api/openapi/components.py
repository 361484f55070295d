"""What every operation shares: the schemas, the error responses, their headers, the token
schemes. Every error response in the spec is built here."""

import re

from werkzeug.http import HTTP_STATUS_CODES

from .. import auth, catalogue, rate_limits, security
from ..errors import PROBLEM_MIMETYPE, RETRY_AFTER_SECONDS, STATUSES
from ..web import edge, request_bodies
from .declare import envelope_schema, json_response

BEARER_SCHEME = "bearerToken"
QUERY_SCHEME = "queryToken"

# Statuses any request can meet, whatever the operation: a Host the service refuses, a
# chunked or oversized body (any request may carry one), a request line or header over the
# edge's limits, a fault, or the database being away when the request is counted.
EVERY_OPERATION = (400, 411, 413, 414, 431, 500, 503)

# Met by every operation that rate limits apply to, and by every operation that reads a body
# (one that stops arriving).
RATE_LIMITED = 429
BODY_STATUSES = (408,)

# Headers that come with an error status, whichever operation answers it.
ERROR_HEADERS = {
    401: {
        "WWW-Authenticate": {
            "description": "How to authenticate: a bearer token.",
            "required": True,
            "schema": {"type": "string"},
            "example": 'Bearer realm="api"',
        }
    },
    405: {
        "Allow": {
            "description": "The methods this path takes.",
            "required": True,
            "schema": {"type": "string"},
            "example": "GET, HEAD, OPTIONS",
        }
    },
    503: {
        "Retry-After": {
            "description": "Seconds to wait before trying again.",
            "required": True,
            "schema": {"type": "integer", "minimum": 0},
            "example": RETRY_AFTER_SECONDS,
        }
    },
}
# The examples are a client spent under the default limit of 120 requests a minute.
ERROR_HEADERS[429] = {
    "Retry-After": {**ERROR_HEADERS[503]["Retry-After"], "example": 30},
    "RateLimit-Limit": {
        "description": "Requests allowed in the current window.",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
        "example": 120,
    },
    "RateLimit-Remaining": {
        "description": "Requests left in the current window.",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
        "example": 0,
    },
    "RateLimit-Reset": {
        "description": "Seconds until the window resets.",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
        "example": 30,
    },
    "RateLimit-Policy": {
        "description": "The limit and its window in seconds, as `limit;w=seconds`.",
        "required": True,
        "schema": {"type": "string"},
        "example": "120;w=60",
    },
}


def _content_schema(value):
    """A JSON schema for a kind's content, from the type of its example."""
    if isinstance(value, int):
        return {"type": "integer", "minimum": 0}
    return {"type": "string"}


# The 400s any request can meet: a Host the service refuses, and a forwarded header from a
# trusted proxy that arrived unreadable (api/web/edge.py).
SHARED_400 = (security.HOST_REFUSED, edge.UNREADABLE_FORWARDED)


def shared_error_messages(config):
    """The messages the app's own limits answer with, for the shared error responses."""
    return {
        400: list(SHARED_400),
        # Every refused token gets one of two messages: an expired one is told so.
        401: [STATUSES[401].message, auth.EXPIRED],
        408: [request_bodies.late_message(config["REQUEST_BODY_TIMEOUT"])],
        411: [security.CHUNKED_REFUSED],
        413: [security.body_too_large(config["MAX_CONTENT_LENGTH"])],
        429: [rate_limits.TOO_MANY_REQUESTS, rate_limits.TOO_MANY_FAILED_TOKENS],
        503: [STATUSES[503].message, request_bodies.TOO_MANY_SLOW_BODIES],
    }


def shared_response(status):
    """The name of the one response that every operation answering ``status`` refers to."""
    return f"Error{status}"


def register(spec, token_schemes, messages, shared_statuses):
    """Schemas, the shared error responses operations refer to, and the token schemes."""
    for name, schema in schemas().items():
        spec.components.schema(name, schema)
    for status in sorted(shared_statuses):
        response = error_spec(status, messages.get(status, []))
        spec.components.response(shared_response(status), response)
    for name, scheme in security_schemes(token_schemes).items():
        spec.components.security_scheme(name, scheme)


COUNT = {"type": "integer", "minimum": 0}

PROBLEM = {
    "type": "object",
    "description": "RFC 9457 problem details, sent to clients that accept "
    "application/problem+json.",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
    },
    "required": ["type", "title", "status", "detail"],
}


def schemas():
    """Every named schema: the envelope of each kind and of errors, counts, health, problems."""
    found = {"Error": envelope_schema("Error", {"type": "string"}, "Every error under /api.")}
    for kind in catalogue.KINDS.values():
        content = _content_schema(kind.example_content())
        found[kind.type] = envelope_schema(kind.type, content, kind.summary)
    found["AnyKind"] = {
        "description": "One of the data kinds.",
        "oneOf": [kind.type for kind in catalogue.KINDS.values()],
    }
    token = {**COUNT, "description": "The requests of the valid token this request sent."}
    found["Counts"] = {
        "type": "object",
        "description": "Hits; errors only for a valid token with the stats scope; and the "
        "requests of the valid token the request sent, never another's.",
        "properties": {"hits": COUNT, "errors": COUNT, "token": token},
        "required": ["hits"],
        "additionalProperties": False,
    }
    for name, key, fmt in (("HourCounts", "hour", "date-time"), ("DayCounts", "day", "date")):
        found[name] = {
            "type": "object",
            "properties": {
                key: {"type": "string", "format": fmt},
                "hits": COUNT,
                "errors": COUNT,
                "token": token,
            },
            "required": [key, "hits"],
            "additionalProperties": False,
        }
    found["Health"] = {
        "type": "object",
        "properties": {"status": {"type": "string", "enum": ["ok", "unavailable"]}},
        "required": ["status"],
        "additionalProperties": False,
    }
    found["Problem"] = PROBLEM
    return found


def security_schemes(token_schemes):
    """The ways to send a token that this server takes."""
    found = {
        BEARER_SCHEME: {
            "type": "http",
            "scheme": "bearer",
            "description": "Authorization: Bearer <token>. The safer way: headers stay out of "
            "access logs and browser history.",
        }
    }
    if QUERY_SCHEME in token_schemes:
        found[QUERY_SCHEME] = {
            "type": "apiKey",
            "in": "query",
            "name": "token",
            "description": "?token=<token>, for clients that cannot set a header.",
        }
    return found


def _slug(text):
    """A short example name from a message's first words."""
    return "-".join(re.findall(r"[a-z0-9]+", text.lower())[:4]) or "example"


def error_spec(status, messages):
    """One error status with the envelope schema and an example per message it can carry.

    Every error response in the spec is built here, so another media type for errors is one
    more entry in its content.
    """
    messages = list(messages) or [STATUSES[status].message]
    response = json_response(
        STATUSES[status].description,
        "Error",
        {
            _slug(message): {"summary": message, "value": {"type": "Error", "content": message}}
            for message in messages
        },
    )
    # The same error as RFC 9457 problem details, for clients that ask for them.
    response["content"][PROBLEM_MIMETYPE] = {
        "schema": {"$ref": "#/components/schemas/Problem"},
        "example": {
            "type": "about:blank",
            "title": HTTP_STATUS_CODES[status],
            "status": status,
            "detail": messages[0],
        },
    }
    if status in ERROR_HEADERS:
        response["headers"] = dict(ERROR_HEADERS[status])
    return response
