"""The health check a platform's router or a load balancer polls."""

from flask_restful import Resource

from .. import storage


class Health(Resource):
    """``/healthz``: ok only after a real database round trip."""

    def get(self):
        if storage.database_reachable():
            return {"status": "ok"}, 200
        return {"status": "unavailable"}, 503, {"Retry-After": "5"}
