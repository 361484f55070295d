"""The OpenAPI 3.1 document, built once per app from the routes that really serve requests.

Each Resource method declares what it takes and answers with :func:`operation`
(``declare.py``), next to the code it describes. The builder here walks ``app.url_map``, so a
route cannot exist without a spec; it adds what every operation shares (``components.py``:
the token schemes, the token errors, the statuses any request can meet) and takes the data
kinds from the catalogue. ``/api/openapi.json`` serves the result, ``/docs`` renders it, and
the tests check the app against it.
"""

import re

from apispec import APISpec
from flask import current_app
from flask.views import MethodView

from .. import auth, security
from . import components
from .components import (
    BEARER_SCHEME,
    BODY_STATUSES,
    ERROR_HEADERS,
    EVERY_OPERATION,
    QUERY_SCHEME,
    RATE_LIMITED,
    error_spec,
)
from .declare import (
    PRIVATE_EXAMPLE,
    data_body,
    envelope_schema,
    json_response,
    kind_names,
    kind_parameter,
    kinds_response,
    operation,
)

__all__ = [
    "ERROR_HEADERS",
    "PRIVATE_EXAMPLE",
    "build_document",
    "data_body",
    "document",
    "envelope_schema",
    "init_app",
    "json_response",
    "kind_names",
    "kind_parameter",
    "kinds_response",
    "operation",
    "reads_token",
    "resolve",
]

TITLE = "REST API"
VERSION = "1.0.0"

DESCRIPTION = (
    "A small REST API that answers with data by name and counts every request it serves. "
    "Every JSON answer under /api, except the OpenAPI document at /api/openapi.json, comes in "
    'one envelope, {"type": ..., "content": ...}, where type names what content holds and '
    'errors have the type "Error". A client that asks for application/problem+json gets its '
    "errors as RFC 9457 problem details instead. A method a path does not take is answered "
    "405 with an Allow header, and a path that is not listed here 404, both in the envelope."
)

# Without PUBLIC_URL, the document's one server is the one serving it, as a URL relative to the
# document's own; tools that need an absolute one (a Postman collection) get it from PUBLIC_URL.
RELATIVE_SERVER = {
    "url": "/",
    "description": "The server that serves this document: relative to the document's own URL.",
}


def servers(public_url):
    """The document's servers: PUBLIC_URL, the address clients reach, when it is set."""
    if not public_url:
        return [RELATIVE_SERVER]
    return [{"url": public_url, "description": "This service, at its public address."}]


CONTACT = {"name": "The operators of this service"}

# Every operation carries its resource's tag; the docs and generated clients group by it.
TAGS = {
    "data": "The data kinds, named in the query string, the body or the path.",
    "stats": "The service's traffic over time.",
    "meta": "This API's own description, and whether it can serve.",
}


# A token is optional everywhere it is read: public data ignores it, private data answers 401
# without it. The empty requirement says "no token" is allowed too. It is the document's
# default; operations that never read a token say so with an empty list.
def token_or_none(token_schemes):
    return [{}] + [{scheme: []} for scheme in token_schemes]


_RULE_ARGUMENT = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def token_errors(allow_query_token):
    """What any operation that reads a token answers with 400 when the token is sent badly."""
    messages = [auth.SENT_TWO_WAYS, auth.MALFORMED_HEADER]
    if not allow_query_token:
        messages.append(auth.QUERY_STRING_DISABLED)
    return messages


def openapi_path(rule):
    """Werkzeug's ``/api/<kind>`` as OpenAPI's ``/api/{kind}``."""
    return _RULE_ARGUMENT.sub(r"{\1}", rule)


def operation_spec(view_class, method, endpoint, token_schemes, shared):
    """The spec of one method of one resource, with the shared parts filled in; the statuses
    it answers through a shared response are added to ``shared``."""
    function = getattr(view_class, method)
    declared = getattr(function, "openapi", None)
    if declared is None or getattr(view_class, "tag", None) not in TAGS:
        raise LookupError(
            f"{view_class.__name__}.{method} serves requests but declares no spec or no tag; "
            "decorate it with openapi.operation(...) and give its class a tag from "
            "openapi.TAGS"
        )
    route = view_class.policy
    messages = {status: list(found) for status, found in declared["errors"].items()}
    scope = declared["scope"]
    if route.reads_token:
        messages.setdefault(400, []).extend(token_errors(QUERY_SCHEME in token_schemes))
    if messages.get(400):
        # The shared 400 a client can cause is a refused Host (EVERY_OPERATION); where an
        # operation has 400s of its own, that one joins them. (An unreadable forwarded header
        # comes from the proxy in front, and the shared response alone names it.)
        messages[400].append(security.HOST_REFUSED)
    responses = dict(declared["responses"])
    common = list(EVERY_OPERATION)
    if route.limited:
        common.append(RATE_LIMITED)
    if declared["body"]:
        common.extend(BODY_STATUSES)
    for status in sorted(messages):
        if messages[status]:
            responses[status] = error_spec(status, messages[status])
        else:
            # Nothing particular to say: the one shared description.
            common.append(status)
    for status in common:
        responses.setdefault(status, components.shared_response(status))
        shared.add(status)
    spec = {
        "operationId": f"{method}_{endpoint}",
        "tags": [view_class.tag],
        "summary": declared["summary"],
        "parameters": declared["parameters"],
        "responses": dict(sorted(responses.items())),
    }
    if not route.reads_token:
        spec["security"] = []
    elif scope is not None:
        # What the operation keeps private needs a token with the scope; a token may be left
        # out where there is a public part, and OpenAPI 3.1 lets a bearer scheme name roles.
        public = [] if declared["token_required"] else [{}]
        spec["security"] = [*public, *({name: [scope]} for name in token_schemes)]
    if declared["description"]:
        spec["description"] = declared["description"]
    if declared["body"]:
        spec["requestBody"] = declared["body"]
    return spec


def build_document(app):
    """The whole document for this app, from the resources its URL map routes to."""
    allow_query_token = app.config["ALLOW_QUERY_TOKEN"]
    token_schemes = [BEARER_SCHEME] + ([QUERY_SCHEME] if allow_query_token else [])
    spec = APISpec(
        title=TITLE,
        version=VERSION,
        openapi_version="3.1.0",
        info={"description": DESCRIPTION, "contact": CONTACT},
        servers=servers(app.config["PUBLIC_URL"]),
        tags=[{"name": name, "description": text} for name, text in TAGS.items()],
        security=token_or_none(token_schemes),
    )
    shared = set()
    for rule in app.url_map.iter_rules():
        view_class = getattr(app.view_functions[rule.endpoint], "view_class", None)
        if view_class is None or not issubclass(view_class, MethodView):
            continue
        methods = sorted(m.lower() for m in view_class.methods)
        spec.path(
            path=openapi_path(rule.rule),
            operations={
                method: operation_spec(view_class, method, rule.endpoint, token_schemes, shared)
                for method in methods
            },
        )
    messages = components.shared_error_messages(app.config)
    components.register(spec, token_schemes, messages, shared)
    return spec.to_dict()


def resolve(spec, value):
    """Follow a local ``$ref`` to the object it names."""
    while isinstance(value, dict) and "$ref" in value:
        node = spec
        for part in value["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        value = node
    return value


def reads_token(spec, operation):
    """Whether an operation of the document reads a token: it names a security scheme, or
    takes the document's, which does."""
    requirements = operation.get("security", spec.get("security", []))
    return any(requirement for requirement in requirements)


def document():
    """This app's spec, as built once when the app was made."""
    return current_app.extensions["openapi"]


def init_app(app):
    """Build the spec once, after every route exists, so that a route without one fails the boot."""
    app.extensions["openapi"] = build_document(app)
