"""The health check a platform's router or a load balancer polls."""

from flask_restful import Resource

from .. import errors, openapi, policy, storage


class Health(Resource):
    """``/healthz``: ok only after a real database round trip."""

    # Polled by the platform: not a hit, never rate limited.
    policy = policy.OPERATIONS
    tag = "meta"

    @openapi.operation(
        "Whether this server can reach its database",
        description="For load balancers and platform routers. Not counted as a hit.",
        responses={
            200: openapi.json_response(
                "The database answered.", "Health", {"ok": {"value": {"status": "ok"}}}
            ),
            503: {
                **openapi.json_response(
                    "The database did not answer.",
                    "Health",
                    {"unavailable": {"value": {"status": "unavailable"}}},
                ),
                "headers": openapi.ERROR_HEADERS[503],
            },
        },
    )
    def get(self):
        if storage.database_reachable():
            return {"status": "ok"}, 200
        return {"status": "unavailable"}, 503, {"Retry-After": str(errors.RETRY_AFTER_SECONDS)}
