"""``/api/stats``: traffic over time as JSON, the same series the ``/stats`` page draws."""

import dataclasses

from .. import openapi, policy
from ..auth import sent_token
from ..pages import traffic
from .base import ApiResource


def _example():
    hour = {"hour": "2026-01-31T13:00:00Z", "hits": 12, "errors": 1, "token": 3}
    day = {"day": "2026-01-31", "hits": 310, "errors": 9, "token": 41}
    totals = {"hits": 4211, "errors": 97, "token": 520}
    content = {"totals": totals, "per_hour": [hour], "per_day": [day]}

    def without(row, *names):
        return {k: v for k, v in row.items() if k not in names}

    public = {
        "totals": {"hits": 4211},
        "per_hour": [without(hour, "errors", "token")],
        "per_day": [without(day, "errors", "token")],
    }
    return {
        "public": {
            "summary": f"without a token (shortened: {traffic.HOURS} hours, {traffic.DAYS} days)",
            "value": {"type": "Stats", "content": public},
        },
        "with_token": {
            "summary": "with a valid token (shortened)",
            "value": {"type": "Stats", "content": content},
        },
    }


STATS_SCHEMA = openapi.envelope_schema(
    "Stats",
    {
        "type": "object",
        "properties": {
            "totals": "Counts",
            # The answer always holds every hour and day; the lengths are stated rather than
            # enforced, so that the examples can show a few of them and still be valid.
            "per_hour": {
                "type": "array",
                "items": "HourCounts",
                "description": f"One entry per UTC hour, the last {traffic.HOURS}, oldest first.",
            },
            "per_day": {
                "type": "array",
                "items": "DayCounts",
                "description": f"One entry per UTC day, the last {traffic.DAYS}, oldest first.",
            },
        },
        "required": ["totals", "per_hour", "per_day"],
        "additionalProperties": False,
    },
)


def _error_count(_request):
    return ("errors",)


class Stats(ApiResource):
    """``/api/stats``: hits for everyone, errors for a valid token."""

    tag = "stats"
    # The error total comes with the hit's write, not in a round trip of its own.
    policy = dataclasses.replace(policy.API_WITH_TOKEN, reads=_error_count)

    @openapi.operation(
        "Traffic over time",
        description=f"Hits per UTC hour for the last {traffic.HOURS} hours and per UTC day for "
        f"the last {traffic.DAYS} days, oldest first, with the current totals. The current hour "
        "and day are included and still growing. Error counts appear only with a valid token "
        "that has the stats scope, and with any valid token, its own requests as token; a token "
        "that is sent but not valid gets 401.",
        responses={200: openapi.json_response("The series.", STATS_SCHEMA, _example())},
        errors={401: []},
        scope=traffic.STATS_SCOPE,
    )
    def get(self):
        report = traffic.report(include_errors=traffic.errors_visible(), token=sent_token())
        return {"type": "Stats", "content": traffic.as_json(report)}, 200
