"""Traffic over time: the series behind ``/stats`` and ``/api/stats``, and who may see errors.

The series come from the app's ``storage.SeriesCache``: completed hours are read once per
process, the open ones on every request, so a view costs the same whatever the history's
length and still counts itself. A request with a valid token also gets that token's own
requests, as the series ``token``, from a cache of its own per token: never another token's.
"""

from flask import current_app

from .. import counting, storage
from ..auth import auth, refuse
from ..config import require

STATS_SCOPE = "stats"
HOURS = 48
DAYS = 30
NAMES = ("hits", "errors")


def errors_visible():
    """Errors are private, as for ``/api?data=errors``: only a valid token with the ``stats``
    scope sees them; a valid token without it sees what everyone does, and its own requests.

    A token that was sent but is not valid is refused with 401 rather than silently ignored,
    so that a client with a revoked or mistyped token finds out.
    """
    token = auth.current_user()
    if token is not None:
        return token.scopes is None or STATS_SCOPE in token.scopes
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
    of completed hours or days built once per window; with the token's own requests as
    ``token`` when the report has them."""
    window, names = report["window"], tuple(report["totals"])
    series = window.per_hour if key == "hour" else window.per_day
    done = window.done_hours if key == "hour" else window.done_days
    head = window.memo(
        (__name__, key, convert, *window.key),
        lambda: _rows(key, series, names, slice(0, done), convert),
    )
    found = head + _rows(key, series, names, slice(done, None), convert)
    token = report["token"]
    if token is None:
        return found
    counter, _total, own = token
    counts = own.per_hour[counter] if key == "hour" else own.per_day[counter]
    return [{**row, "token": count} for row, (_, count) in zip(found, counts, strict=True)]


def report(include_errors, token=None):
    """The totals, and the window of per-hour and per-day counts (``rows`` reads it);
    errors only when the caller may see them, and the valid token's own requests."""
    totals = {"hits": counting.current_hits()}
    if include_errors:
        totals["errors"] = counting.current_total("errors")
    used = None
    if token is not None:
        used = counting.current_total(token.usage_counter)
    # One clock reading for every series, so that their hours line up; taken after the
    # totals, whose read may be the first round trip of a new process, which sets its clock
    # to the database's (storage/clock.py).
    now = storage.clock.utcnow()
    window = current_app.extensions["traffic_series"].read(HOURS, DAYS, now, totals)
    own = None
    if token is not None:
        counter = token.usage_counter
        own = (counter, used, token_series(counter).read(HOURS, DAYS, now, {counter: used}))
    return {"totals": totals, "window": window, "token": own}


# Tokens whose series a process keeps; past this, all are dropped and read again.
MOST_TOKEN_SERIES = 256


def token_series(counter):
    """This process's series of one token's requests, read once per completed hour."""
    kept = current_app.extensions["token_series"]
    found = kept.get(counter)
    if found is None:
        if len(kept) >= MOST_TOKEN_SERIES:
            kept.clear()
        found = kept[counter] = storage.SeriesCache((counter,))
    return found


def _utc_hour(hour):
    return hour.isoformat() + "Z"


def _iso_day(day):
    return day.isoformat()


def as_json(report):
    """The report with its hours and days as ISO 8601 strings, hours marked as UTC."""
    totals = report["totals"]
    if report["token"] is not None:
        totals = {**totals, "token": report["token"][1]}
    return {
        "totals": totals,
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
    app.extensions["token_series"] = {}
