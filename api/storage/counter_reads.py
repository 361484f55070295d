"""Counter reads: a total, and the per-hour and per-day series computed from scratch.

The traffic pages read the series through ``series.py``, which keeps completed hours per
process and reads only the open ones with ``hour_totals``; ``counts_per_hour`` and
``counts_per_day`` compute the same series from every stored row, and the tests hold the two
equal.
"""

from datetime import datetime, time, timedelta

import sqlalchemy as sa

from . import clock
from .engine import reading
from .tables import counter_hours

# A counter's total, the sum of its slots. The cast keeps it an integer: PostgreSQL sums a
# BIGINT column as NUMERIC. The writer's SQLite upsert returns it too.
TOTAL_SQL = "SELECT CAST(COALESCE(SUM(value), 0) AS BIGINT) FROM counters WHERE name = :name"
TOTAL = sa.text(TOTAL_SQL)

HOUR = timedelta(hours=1)


def whole_hour_bound(hour):
    """Half an hour before ``hour``: a bound for comparing stored hours, which are whole.

    SQLite keeps hours as text, written with microseconds by SQLAlchemy and without by the
    counter writer, and a bound at a whole hour would put one precision's row of that hour on
    the wrong side. Between whole hours it cannot: ``> bound`` selects from ``hour`` on, and
    ``< bound`` the hours before it.
    """
    return hour - HOUR / 2


def read_counter(name):
    """The committed total of a counter; zero before its first increment."""
    with reading() as conn:
        return conn.execute(TOTAL, {"name": name}).scalar_one()


# Each stored hour in a window, summed over its slots, for some counters. The names lead the
# primary key, so each name's hours are one index range. Built once: the open hours are read
# on every view of the traffic pages.
_name, _hour, _value = counter_hours.c.name, counter_hours.c.hour, counter_hours.c.value
HOUR_TOTALS = (
    sa.select(_name, _hour, sa.func.sum(_value))
    .where(
        _name.in_(sa.bindparam("names", expanding=True)),
        _hour > sa.bindparam("after", type_=sa.DateTime),
        _hour <= sa.bindparam("last", type_=sa.DateTime),
    )
    .group_by(_name, _hour)
)


def hour_totals(names, first, last):
    """``{name: {hour: total}}`` for each stored hour in [first, last], summed over its slots
    (on SQLite an hour's rows of both precisions come back as two groups, summed here)."""
    params = {"names": list(names), "after": whole_hour_bound(first), "last": last}
    with reading() as conn:
        rows = conn.execute(HOUR_TOTALS, params).all()
    totals = {name: {} for name in names}
    for name, hour, total in rows:
        if hour <= last:
            per_hour = totals[name]
            per_hour[hour] = per_hour.get(hour, 0) + int(total)
    return totals


def hours_back(last, count):
    return [last - timedelta(hours=i) for i in range(count - 1, -1, -1)]


def days_back(today, count):
    return [today - timedelta(days=i) for i in range(count - 1, -1, -1)]


def start_of(day):
    return datetime.combine(day, time.min)


def counts_per_hour(name, hours, now=None):
    """The last ``hours`` UTC hours, oldest first, zero-filled so that a chart has no gaps."""
    last = clock.hour_of(now or clock.utcnow())
    totals = hour_totals((name,), last - timedelta(hours=hours - 1), last)[name]
    return [(hour, totals.get(hour, 0)) for hour in hours_back(last, hours)]


def counts_per_day(name, days, now=None):
    """The last ``days`` UTC days, oldest first, zero-filled; summed from the hourly rows."""
    now = now or clock.utcnow()
    per_day = dict.fromkeys(days_back(now.date(), days), 0)
    for hour, total in hour_totals((name,), start_of(now.date() - timedelta(days=days - 1)), now)[
        name
    ].items():
        per_day[hour.date()] += total
    return list(per_day.items())
