"""The base of every API resource: the one place that says how a resource reads a token."""

from flask_restful import Resource

from ..auth import optional_token


class ApiResource(Resource):
    """Every API resource reads an optional token; each kind decides whether it needs one.

    Subclass this rather than ``Resource``: the token check, the rate limiter's failed-token
    budget and the spec's 400s for a badly sent token all follow from it.
    """

    method_decorators = [optional_token]
    # Tells the spec that every method reads a token, with the 400s a badly sent one gets.
    reads_token = True
