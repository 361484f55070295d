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


def _rows(key, series, names, part):
    """One row per hour or day of ``series[name][part]``: ``{key: when, "hits": n, ...}``."""
    rows = []
    for points in zip(*(series[name][part] for name in names), strict=True):
        row = {key: points[0][0]}
        for name, (_, count) in zip(names, points, strict=True):
            row[name] = count
        rows.append(row)
    return rows


def _table(window, key, names, convert=None):
    """The rows of one series, those of completed hours or days built once per window."""
    series = window.per_hour if key == "hour" else window.per_day
    done = window.done_hours if key == "hour" else window.done_days

    def rows(part):
        built = _rows(key, series, names, part)
        return built if convert is None else [{**row, key: convert(row[key])} for row in built]

    head = window.memo((__name__, key, convert, *window.key), lambda: rows(slice(0, done)))
    return head + rows(slice(done, None))


def report(include_errors):
    """Totals and per-hour and per-day counts; errors only when the caller may see them."""
    # One clock reading for every series, so that their hours line up.
    now = storage.clock.utcnow()
    totals = {"hits": counting.current_hits()}
    if include_errors:
        totals["errors"] = storage.read_counter("errors")
    window = current_app.extensions["traffic_series"].read(HOURS, DAYS, now, totals)
    names = tuple(totals)
    return {
        "totals": totals,
        "per_hour": _table(window, "hour", names),
        "per_day": _table(window, "day", names),
        "window": window,
    }


def _utc_hour(hour):
    return hour.isoformat() + "Z"


def _iso_day(day):
    return day.isoformat()


def as_json(report):
    """The report with its hours and days as ISO 8601 strings, hours marked as UTC."""
    window, names = report["window"], tuple(report["totals"])
    return {
        "totals": report["totals"],
        "per_hour": _table(window, "hour", names, _utc_hour),
        "per_day": _table(window, "day", names, _iso_day),
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
