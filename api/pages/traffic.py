"""Traffic over time: the series behind ``/stats`` and ``/api/stats``, and who may see errors.

The series come from the app's ``storage.SeriesCache``: completed hours are read once per
process, the open ones on every request, so a view costs the same whatever the history's
length and still counts itself.
"""

from flask import current_app

from .. import counting, storage
from ..auth import auth, refuse
from ..config import require

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


def _rows(key, series, names, part, convert):
    """One row per hour or day of ``series[name][part]``: ``{key: when, "hits": n, ...}``,
    with ``when`` converted when ``convert`` is given."""
    rows = []
    for points in zip(*(series[name][part] for name in names), strict=True):
        when = points[0][0]
        row = {key: when if convert is None else convert(when)}
        for name, (_, count) in zip(names, points, strict=True):
            row[name] = count
        rows.append(row)
    return rows


def rows(report, key, convert=None):
    """The rows of the report's per-hour (``key`` "hour") or per-day ("day") series, those
    of completed hours or days built once per window."""
    window, names = report["window"], tuple(report["totals"])
    series = window.per_hour if key == "hour" else window.per_day
    done = window.done_hours if key == "hour" else window.done_days
    head = window.memo(
        (__name__, key, convert, *window.key),
        lambda: _rows(key, series, names, slice(0, done), convert),
    )
    return head + _rows(key, series, names, slice(done, None), convert)


def report(include_errors):
    """The totals, and the window of per-hour and per-day counts (``rows`` reads it);
    errors only when the caller may see them."""
    totals = {"hits": counting.current_hits()}
    if include_errors:
        totals["errors"] = storage.read_counter("errors")
    # One clock reading for every series, so that their hours line up; taken after the
    # totals, whose read may be the first round trip of a new process, which sets its clock
    # to the database's (storage/clock.py).
    now = storage.clock.utcnow()
    window = current_app.extensions["traffic_series"].read(HOURS, DAYS, now, totals)
    return {"totals": totals, "window": window}


def _utc_hour(hour):
    return hour.isoformat() + "Z"


def _iso_day(day):
    return day.isoformat()


def as_json(report):
    """The report with its hours and days as ISO 8601 strings, hours marked as UTC."""
    return {
        "totals": report["totals"],
        "per_hour": rows(report, "hour", _utc_hour),
        "per_day": rows(report, "day", _iso_day),
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
