"""The data resources: ``/api?data=<kind>``, ``/api/<kind>`` and the teapot."""

from flask import abort, request

from .. import catalogue, openapi
from ..auth import auth
from .base import ApiResource

NO_DATA = "No data requested"
UNKNOWN_DATA = "Data specified does not exist"
UNKNOWN_TYPE = "Type not available"
INVALID_JSON = "Request body is not valid JSON"
NOT_AN_OBJECT = 'JSON body must be an object, like {"data": "hits"}'
NOT_A_STRING = "data must be a string"


def answer(name, unknown_message):
    """Produce one kind from the catalogue, or the error its absence or privacy calls for."""
    kind = catalogue.KINDS.get(name)
    if kind is None:
        abort(404, description=unknown_message)
    if kind.private and auth.current_user() is None:
        return auth.auth_error_callback(401)
    return {"type": kind.type, "content": kind.produce()}, 200


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
        abort(400, description="JSON body is nested too deeply")
    if body is None:
        if request.get_data():
            abort(400, description=INVALID_JSON)
        return None
    if not isinstance(body, dict):
        abort(400, description=NOT_AN_OBJECT)
    data = body.get("data")
    if data is not None and not isinstance(data, str):
        abort(400, description=NOT_A_STRING)
    return data


PRIVATE_KINDS = "Needs a valid token for: " + ", ".join(
    kind.name for kind in catalogue.KINDS.values() if kind.private
)


class DataQuery(ApiResource):
    """``/api?data=<kind>``: the tutorial's query endpoint."""

    @openapi.operation(
        "The data named in the query string",
        description=f"Answers with one kind of data. {PRIVATE_KINDS}.",
        parameters=[openapi.data_parameter()],
        responses={200: openapi.kinds_response()},
        errors={400: [NO_DATA], 401: [], 404: [UNKNOWN_DATA]},
    )
    def get(self):
        data = request.args.get("data")
        if data is None:
            abort(400, description=NO_DATA)
        return answer(data, UNKNOWN_DATA)

    @openapi.operation(
        "The data named in the body",
        description="The same as GET, for clients that post a form or JSON. As in the "
        "tutorial, POST /api?data=<kind> with no body works too; when both name the data the "
        "query string wins, and a body that cannot be read is an error either way. "
        f"{PRIVATE_KINDS}.",
        body=openapi.data_body(),
        responses={200: openapi.kinds_response()},
        errors={
            400: [NO_DATA, INVALID_JSON, NOT_AN_OBJECT, NOT_A_STRING],
            401: [],
            404: [UNKNOWN_DATA],
        },
    )
    def post(self):
        # The body is checked even when the query names the data, so a broken body is never
        # silently ignored.
        from_body = data_from_body()
        data = request.args.get("data", from_body)
        if data is None:
            abort(400, description=NO_DATA)
        return answer(data, UNKNOWN_DATA)


class TypedData(ApiResource):
    """``/api/<kind>``: the same data with the kind in the path."""

    @openapi.operation(
        "The data named in the path",
        description=f"The same data as /api?data=<kind>. {PRIVATE_KINDS}.",
        parameters=[openapi.kind_parameter()],
        responses={200: openapi.kinds_response()},
        errors={401: [], 404: [UNKNOWN_TYPE]},
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
