"""``/api/openapi.json``: the OpenAPI document that describes every route under ``/api``."""

from flask_restful import Resource

from .. import errors, openapi, policy
from ..openapi import rendered

JSON = "application/json"
# A cache may keep the document but must ask again before using it, as for pages
# (api/security.py): with Last-Modified and nothing else, browsers would guess a lifetime from
# how long ago the server started, and keep a document a deploy has changed.
CACHING = (("Cache-Control", "no-cache"),)

# The validators the document is served with (api/openapi/rendered.py).
ETAG = {
    "description": "A hash of the document's bytes, for If-None-Match.",
    "required": True,
    "schema": {"type": "string"},
    "example": '"5d41402abc4b2a76b9719d911017c592c4a2fbe3"',
}
LAST_MODIFIED = {
    "description": "When this worker built the document; conditional requests use the ETag.",
    "required": True,
    "schema": {"type": "string"},
    "example": "Tue, 01 Dec 2026 09:00:00 GMT",
}


def serialize():
    """The document as Flask-RESTful's JSON representation writes it (resources/__init__.py)."""
    return errors.json_body(openapi.document()).encode()


class OpenApiDocument(Resource):
    """The spec, built from the code once per app; tools and the docs page read it."""

    policy = policy.API
    tag = "meta"

    @openapi.operation(
        "This API's OpenAPI 3.1 document",
        description="Generated from the code that serves each route. Load it into any OpenAPI "
        "tool; the /docs page is rendered from it.",
        responses={
            200: {
                **openapi.json_response(
                    "The OpenAPI document itself, not wrapped in the envelope.",
                    {
                        "type": "object",
                        "properties": {
                            "openapi": {"type": "string", "description": "The OpenAPI version."},
                            "info": {"type": "object", "description": "Title, version, contact."},
                            "paths": {"type": "object", "description": "Every operation."},
                        },
                        "required": ["openapi", "info", "paths"],
                    },
                    {"shortened": {"value": {"openapi": "3.1.0", "info": {}, "paths": {}}}},
                ),
                "headers": {"ETag": ETAG, "Last-Modified": LAST_MODIFIED},
            },
            304: {
                "description": "Not modified: the copy If-None-Match names is current.",
                "headers": {"ETag": ETAG},
            },
        },
    )
    def get(self):
        # Serialized once per app: the document is about 30 KB, and json.dumps of it costs
        # more than the rest of the request.
        return rendered.once("openapi.json", serialize, JSON, headers=CACHING).answer()
