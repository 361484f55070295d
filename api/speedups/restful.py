"""Flask-RESTful: JSON answers without content negotiation, while JSON is all there is."""

from flask import current_app
from flask_restful import Api

JSON = "application/json"


def json_answer(dumps):
    """The JSON representation, as Flask-RESTful 0.3.10's ``output_json`` writes it when no
    RESTFUL_JSON settings are given (the same bytes, from ``dumps``), without reading the
    config and building a text/html response to relabel on every answer."""

    def output_json(data, code, headers=None):
        response = current_app.response_class(dumps(data), status=code, mimetype=JSON)
        if headers:
            response.headers.extend(headers)
        return response

    return output_json


class JsonOnlyApi(Api):
    """Flask-RESTful 0.3.10's Api, skipping content negotiation while JSON is the only
    representation and the default.

    Negotiation would pick JSON whatever the Accept header says, and parsing that header on
    every request costs more than the rest of building a small answer.
    """

    def make_response(self, data, *args, **kwargs):
        if (
            self.default_mediatype == JSON
            and len(self.representations) == 1
            and JSON in self.representations
            and not kwargs.get("fallback_mediatype")
        ):
            return self.representations[JSON](data, *args, **kwargs)
        return super().make_response(data, *args, **kwargs)
