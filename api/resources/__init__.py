"""The route table: every API resource, its URL and its endpoint name, in one place."""

from flask import current_app
from flask_restful import Api

from .. import errors
from .data import DataQuery, Teapot, TypedData
from .health import Health
from .spec import OpenApiDocument
from .stats import Stats

JSON = "application/json"
# Where the platform's health checks go; the harness and the bench wait on it too.
HEALTH_PATH = "/healthz"

# (resource, URL rule, endpoint), in the order the spec and the docs list them. Werkzeug
# tries fixed paths before converters, so /api/teapot and /api/stats win over /api/<kind>.
ROUTES = (
    (DataQuery, "/api", "data_query"),
    (TypedData, "/api/<kind>", "typed_data"),
    (Teapot, "/api/teapot", "teapot"),
    (Stats, "/api/stats", "stats"),
    (OpenApiDocument, "/api/openapi.json", "openapi"),
    (Health, HEALTH_PATH, "health"),
)


def output_json(data, code, headers=None):
    """The JSON representation, as Flask-RESTful 0.3.10's ``output_json`` writes it when no
    RESTFUL_JSON settings are given (the same bytes: ``errors.json_body``), without
    reading the config and building a text/html response to relabel on every answer."""
    response = current_app.response_class(errors.json_body(data), status=code, mimetype=JSON)
    if headers:
        response.headers.extend(headers)
    return response


class RestfulApi(Api):
    """Flask-RESTful's Api with its error handling replaced by the app's one error function."""

    def error_router(self, original_handler, e):
        """Send every error to Flask's own handling, which ends in the app's one error function.

        Flask-RESTful (checked against 0.3.10) wraps Flask's exception handlers with a router
        that binds the URL map to the request again to choose between its handler and Flask's.
        Here both lead to ``errors.handle_exception``, so the router only costs a second match;
        and for a Host the map cannot bind (not valid IDNA, or outside TRUSTED_HOSTS) binding
        raises again, inside the error handler, and the request would escape Flask.
        """
        return original_handler(e)

    def make_response(self, data, *args, **kwargs):
        """Skip content negotiation while JSON is the only representation and the default.

        Negotiation would pick JSON whatever the Accept header says, and parsing that header
        on every request costs more than the rest of building a small answer.
        """
        if (
            self.default_mediatype == JSON
            and len(self.representations) == 1
            and JSON in self.representations
            and not kwargs.get("fallback_mediatype")
        ):
            return self.representations[JSON](data, *args, **kwargs)
        return super().make_response(data, *args, **kwargs)


def init_app(app):
    """Register every resource on a fresh Api for this app."""
    api = RestfulApi()
    api.representations[JSON] = output_json
    for resource, rule, endpoint in ROUTES:
        api.add_resource(resource, rule, endpoint=endpoint)
    api.init_app(app)
