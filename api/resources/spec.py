"""``/api/openapi.json``: the OpenAPI document that describes every route under ``/api``."""

from flask_restful import Resource

from .. import openapi, policy


class OpenApiDocument(Resource):
    """The spec, built from the code once per app; tools and the docs page read it."""

    policy = policy.API
    tag = "meta"

    @openapi.operation(
        "This API's OpenAPI 3.1 document",
        description="Generated from the code that serves each route. Load it into any OpenAPI "
        "tool; the /docs page is rendered from it.",
        responses={
            200: openapi.json_response(
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
            )
        },
    )
    def get(self):
        return openapi.document(), 200
