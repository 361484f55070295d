"""``/metrics``: the service's metrics in Prometheus' text format (``api/metrics.py``)."""

from flask import abort, current_app, request

from .. import metrics, openapi, policy
from ..auth import auth, lacks_scope, refuse, require_scope
from .base import ApiResource

SCOPE = "metrics"
OFF = "Metrics are turned off on this server"


class Metrics(ApiResource):
    """Read by a scraper: with a token that has the metrics scope, or from a network the
    operator named (METRICS_PUBLIC_FROM); never public by default."""

    # A scrape is not a hit; it draws on the limits, so that wrong tokens here spend the
    # failed-token budget as anywhere.
    policy = policy.Policy(counted=False, reads_token=True)
    tag = "meta"

    @openapi.operation(
        "This server's metrics, for Prometheus",
        description="Requests by route, method and status, their durations, requests in "
        "flight, database errors, counter commits, rate-limit refusals and token checks, "
        "summed over every worker. Needs a token with the metrics scope, unless the client's "
        "address is in METRICS_PUBLIC_FROM. Not counted as a hit.",
        responses={
            200: {
                "description": "The metrics, in Prometheus' text exposition format.",
                "content": {
                    "text/plain": {
                        "schema": {"type": "string"},
                        "example": "# TYPE api_requests_total counter\n"
                        'api_requests_total{method="GET",route="/api",status="200"} 42.0\n',
                    }
                },
            }
        },
        errors={401: [], 403: [lacks_scope(SCOPE)], 404: [OFF]},
        scope=SCOPE,
        token_required=True,
    )
    def get(self):
        if not current_app.config["METRICS_ENABLED"]:
            abort(404, description=OFF)
        if not metrics.public_to(request.remote_addr):
            if auth.current_user() is None:
                refuse()
            require_scope(SCOPE)
        body, media_type = metrics.exposition()
        return current_app.response_class(body, content_type=media_type)
