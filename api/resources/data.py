"""The data resources: ``/api?data=<kind>``, ``/api/<kind>`` and the teapot."""

import dataclasses

from flask import abort, request

from .. import catalogue, openapi, policy
from ..auth import auth, lacks_scope, refuse, require_scope
from .base import ApiResource

NO_DATA = "No data requested"
UNKNOWN_DATA = "Data specified does not exist"
UNKNOWN_TYPE = "Type not available"
INVALID_JSON = "Request body is not valid JSON"
NOT_AN_OBJECT = 'JSON body must be an object, like {"data": "hits"}'
NOT_A_STRING = "data must be a string"
TOO_DEEP = "JSON body is nested too deeply"


def counters_reported(request):
    """The counters the kind a request names in its query or path reports (the catalogue's
    ``reads``), for its hit's write to read; a kind named in a body is read by its view."""
    name = request.args.get("data")
    if name is None and request.view_args:
        name = request.view_args.get("kind")
    kind = catalogue.KINDS.get(name)
    return kind.reads if kind is not None else ()


# Reads a token, answers with data readable by other origins' pages, and has the hit's write
# read the counters the named kind reports.
DATA_POLICY = dataclasses.replace(policy.API_WITH_TOKEN, reads=counters_reported)


def answer(name, unknown_message):
    """Produce one kind from the catalogue, or the error its absence or privacy calls for."""
    kind = catalogue.KINDS.get(name)
    if kind is None:
        abort(404, description=unknown_message)
    if kind.private:
        if auth.current_user() is None:
            refuse()
        require_scope(kind.scope)
    return {"type": kind.type, "content": kind.produce()}, 200


def answer_named(data):
    """``/api``'s answer: the kind the request names, or why it named none."""
    if data is None:
        abort(400, description=NO_DATA)
    return answer(data, UNKNOWN_DATA)


def data_from_body():
    """The ``data`` field of a form or JSON object body; None when the body has none."""
    if request.form.get("data") is not None:
        return request.form["data"]
    if not request.is_json:
        return None
    try:
        body = request.get_json(silent=True)
    except RecursionError:
        # silent=True swallows ValueError only; "[[[[..." a few thousand deep raises this.
        abort(400, description=TOO_DEEP)
    if body is None:
        if request.get_data():
            abort(400, description=INVALID_JSON)
        return None
    if not isinstance(body, dict):
        abort(400, description=NOT_AN_OBJECT)
    if "data" in body and not isinstance(body["data"], str):
        abort(400, description=NOT_A_STRING)
    return body.get("data")


PRIVATE_KINDS = "Needs a valid token for: " + ", ".join(
    f"{kind.name} (scope {kind.scope})" for kind in catalogue.KINDS.values() if kind.private
)
# The scope the private kinds need; the catalogue has one.
(PRIVATE_SCOPE,) = {kind.scope for kind in catalogue.KINDS.values() if kind.private}


def answers_a_kind(summary, description, errors, **declared):
    """Declare an operation that answers with one of the catalogue's kinds, private ones only
    with a valid token (401 without)."""
    return openapi.operation(
        summary,
        description=f"{description} {PRIVATE_KINDS}.",
        responses={200: openapi.kinds_response()},
        errors={401: [], 403: [lacks_scope(PRIVATE_SCOPE)], **errors},
        scope=PRIVATE_SCOPE,
        **declared,
    )


class DataQuery(ApiResource):
    """``/api?data=<kind>``: the tutorial's query endpoint."""

    policy = DATA_POLICY

    @answers_a_kind(
        "The data named in the query string",
        "Answers with one kind of data.",
        {400: [NO_DATA], 404: [UNKNOWN_DATA]},
        parameters=[openapi.kind_parameter("data", "query")],
    )
    def get(self):
        return answer_named(request.args.get("data"))

    @answers_a_kind(
        "The data named in the body",
        "The same as GET, for clients that post a form or JSON. As in the tutorial, "
        "POST /api?data=<kind> with no body works too; when both name the data the query "
        "string wins, and a body that cannot be read, or names no known kind, is an error "
        "either way.",
        {400: [NO_DATA, INVALID_JSON, NOT_AN_OBJECT, NOT_A_STRING, TOO_DEEP], 404: [UNKNOWN_DATA]},
        parameters=[
            openapi.kind_parameter(
                "data",
                "query",
                required=False,
                description="Which data to answer with; wins over the body's when both name it.",
            )
        ],
        body=openapi.data_body(),
    )
    def post(self):
        # The body is checked even when the query names the data, so a broken body is never
        # silently ignored.
        from_body = data_from_body()
        if from_body is not None and from_body not in catalogue.KINDS:
            abort(404, description=UNKNOWN_DATA)
        return answer_named(request.args.get("data", from_body))


class TypedData(ApiResource):
    """``/api/<kind>``: the same data with the kind in the path."""

    policy = DATA_POLICY

    @answers_a_kind(
        "The data named in the path",
        "The same data as /api?data=<kind>.",
        {404: [UNKNOWN_TYPE]},
        parameters=[openapi.kind_parameter("kind", "path")],
    )
    def get(self, kind):
        return answer(kind, UNKNOWN_TYPE)


class Teapot(ApiResource):
    """``/api/teapot``: the tutorial's 418."""

    @openapi.operation(
        "A teapot, which cannot brew coffee",
        description="Always answers 418, as RFC 2324 asks of a teapot.",
        responses={},
        errors={418: []},
    )
    def get(self):
        abort(418)
