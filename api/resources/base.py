"""The base of every API resource: the one place that says how a resource reads a token."""

from flask_restful import Resource

from .. import policy
from ..auth import with_optional_token


class ApiResource(Resource):
    """Every API resource reads an optional token; each kind decides whether it needs one.

    Subclass this rather than ``Resource``: the token check, the rate limiter's failed-token
    budget and the spec's 400s for a badly sent token all follow from it.
    """

    # Reads a token: the limiter looks it up first, the spec lists the 400s a badly sent one
    # gets. Data, readable by other origins' pages.
    policy = policy.API_WITH_TOKEN
    # The data kinds, unless a resource says otherwise (openapi.TAGS lists them).
    tag = "data"

    def dispatch_request(self, *args, **kwargs):
        # Not through method_decorators, which Flask-RESTful applies anew on every request.
        return with_optional_token(super().dispatch_request, *args, **kwargs)
