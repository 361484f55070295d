"""The route table: every API resource, its URL and its endpoint name, in one place."""

from flask_restful import Api

from .. import errors
from .data import DataQuery, Teapot, TypedData
from .health import Health

# (resource, URL rule, endpoint). Werkzeug tries fixed paths before converters, so
# /api/teapot wins over /api/<kind>.
ROUTES = (
    (DataQuery, "/api", "data_query"),
    (Teapot, "/api/teapot", "teapot"),
    (TypedData, "/api/<kind>", "typed_data"),
    (Health, "/healthz", "health"),
)


class RestfulApi(Api):
    """Flask-RESTful's Api with its error handling replaced by the app's one error function."""

    def handle_error(self, e):
        """Flask-RESTful catches every error raised in a Resource; send it to the one shape."""
        return errors.handle_exception(e)


def init_app(app):
    """Register every resource on a fresh Api for this app."""
    api = RestfulApi()
    for resource, rule, endpoint in ROUTES:
        api.add_resource(resource, rule, endpoint=endpoint)
    api.init_app(app)
    app.extensions["restful_api"] = api
