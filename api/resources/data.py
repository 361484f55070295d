"""The data resources: ``/api?data=<kind>``, ``/api/<kind>`` and the teapot."""

from flask import abort, request
from flask_restful import Resource

from .. import catalogue
from ..auth import auth


class ApiResource(Resource):
    """Every API resource reads an optional token; each kind decides whether it needs one."""

    method_decorators = [auth.login_required(optional=True)]


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
            abort(400, description="Request body is not valid JSON")
        return None
    if not isinstance(body, dict):
        abort(400, description='JSON body must be an object, like {"data": "hits"}')
    data = body.get("data")
    if data is not None and not isinstance(data, str):
        abort(400, description="data must be a string")
    return data


class DataQuery(ApiResource):
    """``/api?data=<kind>``: the tutorial's query endpoint."""

    def get(self):
        data = request.args.get("data")
        if data is None:
            abort(400, description="No data requested")
        return answer(data, "Data specified does not exist")

    def post(self):
        # The body is checked even when the query names the data, so a broken body is never
        # silently ignored.
        from_body = data_from_body()
        data = request.args.get("data", from_body)
        if data is None:
            abort(400, description="No data requested")
        return answer(data, "Data specified does not exist")


class TypedData(ApiResource):
    """``/api/<kind>``: the same data with the kind in the path."""

    def get(self, kind):
        return answer(kind, "Type not available")


class Teapot(ApiResource):
    """``/api/teapot``: the tutorial's 418."""

    def get(self):
        abort(418)
