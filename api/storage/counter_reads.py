"""Counter reads: a total, and the per-hour and per-day series behind the traffic pages."""

from datetime import datetime, time, timedelta

import sqlalchemy as sa

from . import clock
from .engine import reading
from .tables import counter_hours

# A counter's total, the sum of its slots. The cast keeps it an integer: PostgreSQL sums a
# BIGINT column as NUMERIC. The writer's SQLite upsert returns it too.
TOTAL_SQL = "SELECT CAST(COALESCE(SUM(value), 0) AS BIGINT) FROM counters WHERE name = :name"
TOTAL = sa.text(TOTAL_SQL)


def read_counter(name):
    """The committed total of a counter; zero before its first increment."""
    with reading() as conn:
        return conn.execute(TOTAL, {"name": name}).scalar_one()


def _hour_totals(name, first, last):
    """Each stored hour's total in [first, last], summed over its slots.

    SQLite keeps hours as text, and a text bound with another precision than the stored rows
    (``12:00:00`` against ``12:00:00.000000``) would drop the first hour. So SQL selects from
    an hour earlier and the exact window is cut here, on parsed datetimes.
    """
    with reading() as conn:
        rows = conn.execute(
            sa.select(counter_hours.c.hour, sa.func.sum(counter_hours.c.value))
            .where(
                counter_hours.c.name == name,
                counter_hours.c.hour > first - timedelta(hours=1),
            )
            .group_by(counter_hours.c.hour)
        ).all()
    totals = {}
    for hour, total in rows:
        if first <= hour <= last:
            totals[hour] = totals.get(hour, 0) + int(total)
    return totals


def counts_per_hour(name, hours, now=None):
    """The last ``hours`` UTC hours, oldest first, zero-filled so that a chart has no gaps."""
    last = (now or clock.utcnow()).replace(minute=0, second=0, microsecond=0)
    first = last - timedelta(hours=hours - 1)
    totals = _hour_totals(name, first, last)
    span = (first + timedelta(hours=i) for i in range(hours))
    return [(hour, totals.get(hour, 0)) for hour in span]


def counts_per_day(name, days, now=None):
    """The last ``days`` UTC days, oldest first, zero-filled; summed from the hourly rows."""
    now = now or clock.utcnow()
    first = now.date() - timedelta(days=days - 1)
    per_day = dict.fromkeys((first + timedelta(days=i) for i in range(days)), 0)
    start = datetime.combine(first, time.min)
    for hour, total in _hour_totals(name, start, now).items():
        per_day[hour.date()] += total
    return list(per_day.items())
