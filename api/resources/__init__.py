"""The route table: every API resource, its URL and its endpoint name, in one place."""

from .. import errors
from ..speedups.restful import JSON, JsonOnlyApi, json_answer
from .data import DataQuery, Teapot, TypedData
from .health import Health
from .metrics import Metrics
from .spec import OpenApiDocument
from .stats import Stats

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
    (Metrics, "/metrics", "metrics"),
)


class RestfulApi(JsonOnlyApi):
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


def init_app(app):
    """Register every resource on a fresh Api for this app."""
    api = RestfulApi()
    api.representations[JSON] = json_answer(errors.json_body)
    for resource, rule, endpoint in ROUTES:
        api.add_resource(resource, rule, endpoint=endpoint)
    api.init_app(app)
