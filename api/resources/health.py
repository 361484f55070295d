"""The health check a platform's router or a load balancer polls."""

from flask_restful import Resource

from .. import errors, openapi, policy, storage

# What a health check answers: ok, or unavailable with when to ask again.
ANSWERS = {
    200: openapi.json_response(
        "The database took a write.", "Health", {"ok": {"value": {"status": "ok"}}}
    ),
    503: {
        **openapi.json_response(
            "The database is unreachable, read-only, locked or full.",
            "Health",
            {"unavailable": {"value": {"status": "unavailable"}}},
        ),
        "headers": openapi.ERROR_HEADERS[503],
    },
}


class Health(Resource):
    """``/healthz``: ok only when the database takes a write, as every counted request needs."""

    tag = "meta"
    # Polled by the platform: not a hit, never rate limited.
    policy = policy.OPERATIONS

    @openapi.operation(
        "Whether this server can count requests",
        description="For load balancers and routers: ok when the database takes a write, as "
        "counting needs. Not a hit.",
        responses=ANSWERS,
    )
    def get(self):
        if storage.database_writable():
            return {"status": "ok"}, 200
        return {"status": "unavailable"}, 503, {"Retry-After": str(errors.RETRY_AFTER_SECONDS)}
