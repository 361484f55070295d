"""Traffic over time: the series behind ``/stats`` and ``/api/stats``, and who may see errors.

The series come from the app's ``storage.SeriesCache``: completed hours are read once per
process, the open ones on every request, so a view costs the same whatever the history's
length and still counts itself.
"""

from flask import current_app

from . import counting, storage
from .auth import auth, refuse
from .config import require

HOURS = 48
DAYS = 30
NAMES = ("hits", "errors")


def errors_visible():
    """Errors are private, as for ``/api?data=errors``: only a valid token sees them.

    A token that was sent but is not valid is refused with 401 rather than silently ignored,
    so that a client with a revoked or mistyped token finds out.
    """
    if auth.current_user() is not None:
        return True
    if auth.get_auth() is not None:
        refuse()
    return False


def _rows(key, series):
    """One row per hour or day, with a count per counter: ``{key: when, "hits": n, ...}``."""
    rows = []
    for points in zip(*series.values(), strict=True):
        row = {key: points[0][0]}
        row.update((name, count) for name, (_, count) in zip(series, points, strict=True))
        rows.append(row)
    return rows


def report(include_errors):
    """Totals and per-hour and per-day counts; errors only when the caller may see them."""
    names = NAMES if include_errors else NAMES[:1]
    # One clock reading for every series, so that their hours line up.
    now = storage.clock.utcnow()
    totals = {"hits": counting.current_hits()}
    if include_errors:
        totals["errors"] = storage.read_counter("errors")
    per_hour, per_day = current_app.extensions["traffic_series"].read(HOURS, DAYS, now)
    return {
        "totals": totals,
        "per_hour": _rows("hour", {n: per_hour[n] for n in names}),
        "per_day": _rows("day", {n: per_day[n] for n in names}),
    }


def as_json(report):
    """The report with its hours and days as ISO 8601 strings, hours marked as UTC."""
    return {
        "totals": report["totals"],
        "per_hour": [{**row, "hour": row["hour"].isoformat() + "Z"} for row in report["per_hour"]],
        "per_day": [{**row, "day": row["day"].isoformat()} for row in report["per_day"]],
    }


def init_app(app):
    """Keep this process's series, once the hourly rows are known to outlive every chart."""
    require(
        app.config,
        "COUNTER_HOURS_RETENTION_DAYS",
        lambda days: days == 0 or days > DAYS,
        f"0 (keep every hour) or more than the {DAYS} days the charts draw",
    )
    app.extensions["traffic_series"] = storage.SeriesCache(NAMES)
