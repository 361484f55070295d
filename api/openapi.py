"""The OpenAPI 3.1 document, built once per app from the routes that really serve requests.

Each Resource method declares what it takes and answers with :func:`operation`, next to the
code it describes. The builder walks ``app.url_map``, so a route cannot exist without a spec;
it adds what every operation shares (the token schemes, the token errors, the statuses any
request can meet) and takes the data kinds from the catalogue. ``/api/openapi.json`` serves
the result, ``/docs`` renders it, and the tests check the app against it.
"""

import re

from apispec import APISpec
from flask import current_app
from flask.views import MethodView
from werkzeug.http import HTTP_STATUS_CODES

from . import auth, catalogue, rate_limits, request_bodies, security
from .errors import PROBLEM_MIMETYPE, RETRY_AFTER_SECONDS, STANDARD_MESSAGES

TITLE = "REST API"
VERSION = "1.0.0"

DESCRIPTION = (
    "A small REST API that answers with data by name and counts every request it serves. "
    "Every JSON answer under /api, except the OpenAPI document at /api/openapi.json, comes in "
    'one envelope, {"type": ..., "content": ...}, where type names what content holds and '
    'errors have the type "Error". A client that asks for application/problem+json gets its '
    "errors as RFC 9457 problem details instead."
)

# Every error status the API answers, and what it means to a client. The docs list these,
# and each operation answers the ones it declares plus EVERY_OPERATION.
ERROR_STATUSES = {
    400: "The request is malformed: no data named, a body that cannot be read, or a token "
    "sent the wrong way.",
    401: "The data is private and the request has no valid token.",
    404: "No such data kind, or no such path.",
    405: "The path exists but does not take this method; Allow lists the methods it takes.",
    408: "The request body stopped arriving: nothing came for REQUEST_BODY_TIMEOUT seconds "
    "(10 by default).",
    411: "The body came chunked (Transfer-Encoding); send it with a Content-Length instead.",
    413: "The request body is over the size limit (MAX_CONTENT_LENGTH, 64 KiB by default).",
    414: "The request line is over 4 KiB; refused before the request reaches the app, so it is "
    "not counted.",
    418: "The teapot refuses to brew coffee.",
    429: "Too many requests from this address or token, or too many wrong tokens from this "
    "address; retry after Retry-After seconds.",
    431: "A header is over 8 KiB, or there are more than 100; refused before the request reaches "
    "the app, so it is not counted.",
    500: "A fault on the server's side. It is logged there; the answer never holds a traceback.",
    503: "The database cannot be reached right now, or too many request bodies are arriving "
    "slowly; retry after Retry-After seconds.",
}

# Every status errors.py can answer with has a description here, and no other.
if set(ERROR_STATUSES) != set(STANDARD_MESSAGES):
    raise RuntimeError("openapi.ERROR_STATUSES and errors.STANDARD_MESSAGES list other statuses")

# Statuses any counted request can meet, whatever the operation: a fault, or the database
# being away when the request is counted.
EVERY_OPERATION = (500, 503)

# Met by every operation that rate limits apply to, and by every operation with a body.
RATE_LIMITED = 429
BODY_STATUSES = (408, 411, 413)

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

# The name of a request example that needs a token; the docs send one with it.
PRIVATE_EXAMPLE = "with-token"

BEARER_SCHEME = "bearerToken"
QUERY_SCHEME = "queryToken"

_RULE_ARGUMENT = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def operation(summary, *, responses, description=None, parameters=(), body=None, errors=None):
    """Declare one resource method's part of the spec beside its code, so both change together.

    ``responses`` maps success statuses to response objects; ``errors`` maps error statuses
    to the messages that operation can answer with, each shown as an example.
    """

    def attach(method):
        method.openapi = {
            "summary": summary,
            "description": description,
            "parameters": list(parameters),
            "body": body,
            "responses": responses,
            "errors": errors or {},
        }
        return method

    return attach


# Pieces the resources declare with, built from the catalogue so that no kind is ever missing.


def kind_names():
    """Every data kind, in catalogue order."""
    return list(catalogue.KINDS)


def _public_and_private(wrap=lambda value: value):
    """Two named examples: a public kind, and a private one that needs a token."""
    public = next(kind.name for kind in catalogue.KINDS.values() if not kind.private)
    examples = {"public": {"summary": "public data", "value": wrap(public)}}
    private = [kind.name for kind in catalogue.KINDS.values() if kind.private]
    if private:
        examples[PRIVATE_EXAMPLE] = {
            "summary": "private data, with a valid token",
            "value": wrap(private[0]),
        }
    return examples


def data_parameter():
    """The ``data`` query parameter: one of the catalogue's kinds."""
    return {
        "name": "data",
        "in": "query",
        "required": True,
        "description": "Which data to answer with.",
        "schema": {"type": "string", "enum": kind_names()},
        "examples": _public_and_private(),
    }


def kind_parameter():
    """The ``{kind}`` path segment: one of the catalogue's kinds."""
    return {
        "name": "kind",
        "in": "path",
        "required": True,
        "description": "Which data to answer with.",
        "schema": {"type": "string", "enum": kind_names()},
        "examples": _public_and_private(),
    }


def data_body():
    """A POST body naming the data, as a form field or a JSON object."""
    schema = {
        "type": "object",
        "properties": {"data": {"type": "string", "enum": kind_names()}},
        "required": ["data"],
    }
    return {
        "description": "The data to answer with, as a form field or a JSON object.",
        "required": True,
        "content": {
            media_type: {
                "schema": schema,
                "examples": _public_and_private(lambda name: {"data": name}),
            }
            for media_type in ("application/x-www-form-urlencoded", "application/json")
        },
    }


def json_response(description, schema, examples):
    """A JSON response with named examples."""
    return {
        "description": description,
        "content": {"application/json": {"schema": schema, "examples": examples}},
    }


def kinds_response():
    """A 200 answer with any kind from the catalogue, one example each."""
    return json_response(
        "The data asked for, in the envelope.",
        "AnyKind",
        {
            kind.name: {
                "summary": f"{kind.name}{' (with a valid token)' if kind.private else ''}",
                "value": {"type": kind.type, "content": kind.example_content()},
            }
            for kind in catalogue.KINDS.values()
        },
    )


def _content_schema(value):
    """A JSON schema for a kind's content, from the type of its example."""
    if isinstance(value, int):
        return {"type": "integer", "minimum": 0}
    return {"type": "string"}


def envelope_schema(type_, content, description=None):
    """The API's envelope with a fixed type and the given content schema."""
    schema = {
        "type": "object",
        "properties": {"type": {"const": type_}, "content": content},
        "required": ["type", "content"],
        "additionalProperties": False,
    }
    if description:
        schema["description"] = description
    return schema


def shared_error_messages(config):
    """The messages the app's own limits answer with, for the shared error responses."""
    return {
        408: [request_bodies.stalled_message(config["REQUEST_BODY_TIMEOUT"])],
        411: [security.CHUNKED_REFUSED],
        413: [security.body_too_large(config["MAX_CONTENT_LENGTH"])],
        429: [rate_limits.TOO_MANY_REQUESTS, rate_limits.TOO_MANY_FAILED_TOKENS],
        503: [STANDARD_MESSAGES[503], request_bodies.TOO_MANY_SLOW_BODIES],
    }


def _register_components(spec, token_schemes, messages):
    """Schemas, shared error responses and the token schemes every operation refers to."""
    components = spec.components
    components.schema(
        "Error", envelope_schema("Error", {"type": "string"}, "Every error under /api.")
    )
    for kind in catalogue.KINDS.values():
        components.schema(
            kind.type,
            envelope_schema(kind.type, _content_schema(kind.example_content()), kind.summary),
        )
    components.schema(
        "AnyKind",
        {
            "description": "One of the data kinds.",
            "oneOf": [kind.type for kind in catalogue.KINDS.values()],
        },
    )
    counts = {"type": "integer", "minimum": 0}
    components.schema(
        "Counts",
        {
            "type": "object",
            "description": "Hits, and errors only for a request with a valid token.",
            "properties": {"hits": counts, "errors": counts},
            "required": ["hits"],
            "additionalProperties": False,
        },
    )
    for name, key, fmt in (("HourCounts", "hour", "date-time"), ("DayCounts", "day", "date")):
        components.schema(
            name,
            {
                "type": "object",
                "properties": {
                    key: {"type": "string", "format": fmt},
                    "hits": counts,
                    "errors": counts,
                },
                "required": [key, "hits"],
                "additionalProperties": False,
            },
        )
    components.schema(
        "Health",
        {
            "type": "object",
            "properties": {"status": {"type": "string", "enum": ["ok", "unavailable"]}},
            "required": ["status"],
            "additionalProperties": False,
        },
    )
    components.schema(
        "Problem",
        {
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
        },
    )
    for status in ERROR_STATUSES:
        components.response(f"Error{status}", error_response(status, messages.get(status, [])))
    components.security_scheme(
        BEARER_SCHEME,
        {
            "type": "http",
            "scheme": "bearer",
            "description": "Authorization: Bearer <token>. The safer way: headers stay out of "
            "access logs and browser history.",
        },
    )
    if QUERY_SCHEME in token_schemes:
        components.security_scheme(
            QUERY_SCHEME,
            {
                "type": "apiKey",
                "in": "query",
                "name": "token",
                "description": "?token=<token>, for clients that cannot set a header.",
            },
        )


def _slug(text):
    """A short example name from a message's first words."""
    return "-".join(re.findall(r"[a-z0-9]+", text.lower())[:4]) or "example"


def error_response(status, messages):
    """One error status with the envelope schema and an example per message it can carry.

    Every error response in the spec is built here, so another media type for errors is one
    more entry in its content.
    """
    messages = list(messages) or [STANDARD_MESSAGES[status]]
    response = json_response(
        ERROR_STATUSES[status],
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


def token_errors(allow_query_token):
    """What any operation that reads a token answers with 400 when the token is sent badly."""
    messages = [auth.SENT_TWO_WAYS, auth.MALFORMED_HEADER]
    if not allow_query_token:
        messages.append(auth.QUERY_STRING_DISABLED)
    return messages


def openapi_path(rule):
    """Werkzeug's ``/api/<kind>`` as OpenAPI's ``/api/{kind}``."""
    return _RULE_ARGUMENT.sub(r"{\1}", rule)


def _operation(view_class, method, path, endpoint, token_schemes, allow_query_token):
    """The spec of one method of one resource, with the shared parts filled in."""
    function = getattr(view_class, method)
    declared = getattr(function, "openapi", None)
    if declared is None:
        raise LookupError(
            f"{view_class.__name__}.{method} serves requests but declares no spec; "
            "decorate it with openapi.operation(...)"
        )
    reads_token = getattr(view_class, "reads_token", False)
    messages = {status: list(found) for status, found in declared["errors"].items()}
    if reads_token:
        messages.setdefault(400, []).extend(token_errors(allow_query_token))
    responses = dict(declared["responses"])
    for status in sorted(messages):
        responses[status] = error_response(status, messages[status])
    shared = list(EVERY_OPERATION)
    if path not in rate_limits.UNLIMITED_PATHS:
        shared.append(RATE_LIMITED)
    if declared["body"]:
        shared.extend(BODY_STATUSES)
    for status in shared:
        responses.setdefault(status, f"Error{status}")
    spec = {
        "operationId": f"{method}_{endpoint}",
        "summary": declared["summary"],
        "parameters": declared["parameters"],
        "responses": dict(sorted(responses.items())),
        # A token is optional everywhere it is read: public data ignores it, private data
        # answers 401 without it. An empty requirement says "no token" is allowed too.
        "security": [{}] + [{scheme: []} for scheme in token_schemes] if reads_token else [],
    }
    if declared["description"]:
        spec["description"] = declared["description"]
    if declared["body"]:
        spec["requestBody"] = declared["body"]
    return spec


def build(app):
    """The whole document for this app, from the resources its URL map routes to."""
    allow_query_token = app.config["ALLOW_QUERY_TOKEN"]
    token_schemes = [BEARER_SCHEME] + ([QUERY_SCHEME] if allow_query_token else [])
    spec = APISpec(
        title=TITLE,
        version=VERSION,
        openapi_version="3.1.0",
        info={"description": DESCRIPTION},
    )
    _register_components(spec, token_schemes, shared_error_messages(app.config))
    for rule in app.url_map.iter_rules():
        view_class = getattr(app.view_functions[rule.endpoint], "view_class", None)
        if view_class is None or not issubclass(view_class, MethodView):
            continue
        methods = sorted(m.lower() for m in view_class.methods)
        spec.path(
            path=openapi_path(rule.rule),
            operations={
                method: _operation(
                    view_class, method, rule.rule, rule.endpoint, token_schemes, allow_query_token
                )
                for method in methods
            },
        )
    return spec.to_dict()


def document():
    """This app's spec, as built once when the app was made."""
    return current_app.extensions["openapi"]


def init_app(app):
    """Build the spec once, after every route exists, so that a route without one fails the boot."""
    app.extensions["openapi"] = build(app)
