"""Counter reads: a total, and the per-hour and per-day series behind the traffic pages.

An hour that has ended does not change once every increment stamped with it has committed,
so each process keeps the completed hours it has read (:class:`SeriesCache`) and asks the
database only for the hours still open. ``counts_per_hour`` and ``counts_per_day`` compute the
same series from scratch; the tests hold the two equal.
"""

import threading
from datetime import datetime, time, timedelta

import sqlalchemy as sa

from . import clock
from .engine import reading
from .tables import counter_hours

# A counter's total, the sum of its slots. The cast keeps it an integer: PostgreSQL sums a
# BIGINT column as NUMERIC. The writer's SQLite upsert returns it too.
TOTAL_SQL = "SELECT CAST(COALESCE(SUM(value), 0) AS BIGINT) FROM counters WHERE name = :name"
TOTAL = sa.text(TOTAL_SQL)

# How long after its end an hour is final. The writer stamps a batch with the hour just
# before its statements run and bounds them by WRITE_DEADLINE (counter_writer.py), so every
# increment of an hour has committed a minute after it ends; the rest is room for the clocks
# of several dynos to disagree.
SEALED_AFTER = timedelta(minutes=5)
HOUR = timedelta(hours=1)


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


def _hour_totals(names, first, last):
    """``{name: {hour: total}}`` for each stored hour in [first, last], summed over its slots.

    SQLite keeps hours as text, and a text bound with another precision than the stored rows
    (``12:00:00`` against ``12:00:00.000000``) would drop the first hour. So SQL selects from
    an hour earlier and the exact window is cut here, on parsed datetimes.
    """
    params = {"names": list(names), "after": first - HOUR, "last": last}
    with reading() as conn:
        rows = conn.execute(HOUR_TOTALS, params).all()
    totals = {name: {} for name in names}
    for name, hour, total in rows:
        if first <= hour <= last:
            per_hour = totals[name]
            per_hour[hour] = per_hour.get(hour, 0) + int(total)
    return totals


def _hours(last, count):
    return [last - timedelta(hours=i) for i in range(count - 1, -1, -1)]


def _days(today, count):
    return [today - timedelta(days=i) for i in range(count - 1, -1, -1)]


def _start_of(day):
    return datetime.combine(day, time.min)


def counts_per_hour(name, hours, now=None):
    """The last ``hours`` UTC hours, oldest first, zero-filled so that a chart has no gaps."""
    last = clock.hour_of(now or clock.utcnow())
    totals = _hour_totals((name,), last - timedelta(hours=hours - 1), last)[name]
    return [(hour, totals.get(hour, 0)) for hour in _hours(last, hours)]


def counts_per_day(name, days, now=None):
    """The last ``days`` UTC days, oldest first, zero-filled; summed from the hourly rows."""
    now = now or clock.utcnow()
    per_day = dict.fromkeys(_days(now.date(), days), 0)
    for hour, total in _hour_totals((name,), _start_of(now.date() - timedelta(days=days - 1)), now)[
        name
    ].items():
        per_day[hour.date()] += total
    return list(per_day.items())


class SeriesCache:
    """The per-hour and per-day series of some counters, with completed hours read once.

    Hours that ended more than SEALED_AFTER ago are final, and are kept here per process
    with their days' sums; each read asks the database only for the hours after them (the
    current hour, and the one before it for the first minutes of an hour), so a read costs
    the same with two years of history as with one day, and every process and dyno shows the
    same numbers for a completed hour. The kept hours move forward once an hour.
    """

    def __init__(self, names):
        self.names = tuple(names)
        self._lock = threading.Lock()
        # Completed hours [_first, _until), per name; and their days' sums.
        self._first = self._until = None
        self._hours = {}
        self._days = {}

    def read(self, hours, days, now):
        """``(per_hour, per_day)``: ``{name: [(hour, count), ...]}`` for the last ``hours``
        hours and ``{name: [(day, count), ...]}`` for the last ``days`` days, oldest first."""
        last = clock.hour_of(now)
        first_day = now.date() - timedelta(days=days - 1)
        first = min(last - timedelta(hours=hours - 1), _start_of(first_day))
        open_from = clock.hour_of(now - SEALED_AFTER)
        sealed_hours, sealed_days = self._sealed(first, open_from)
        live = _hour_totals(self.names, open_from, last)
        per_hour, per_day = {}, {}
        for name in self.names:
            done, still_open = sealed_hours[name], live[name]
            per_hour[name] = [
                (hour, (still_open if hour >= open_from else done).get(hour, 0))
                for hour in _hours(last, hours)
            ]
            day_counts = dict(sealed_days[name])
            for hour, count in live[name].items():
                day_counts[hour.date()] = day_counts.get(hour.date(), 0) + count
            per_day[name] = [(day, day_counts.get(day, 0)) for day in _days(now.date(), days)]
        return per_hour, per_day

    def _sealed(self, first, until):
        """The completed hours in [first, until) and their days' sums, read from the database
        only where they were not read before."""
        with self._lock:
            if self._until is None or until < self._until or first < self._first:
                # The first read, a clock that went back (tests move it), or a longer window.
                self._load(first, until, reset=True)
            elif until > self._until:
                self._load(self._until, until, reset=False)
                self._forget_before(first)
            return self._hours, self._days

    def _load(self, first, until, reset):
        read = _hour_totals(self.names, first, until - HOUR) if until > first else {}
        hours = {} if reset else {name: dict(self._hours[name]) for name in self.names}
        days = {} if reset else {name: dict(self._days[name]) for name in self.names}
        for name in self.names:
            hours.setdefault(name, {})
            days.setdefault(name, {})
            for hour, count in read.get(name, {}).items():
                hours[name][hour] = count
                days[name][hour.date()] = days[name].get(hour.date(), 0) + count
        # Readers outside the lock keep the dicts they were handed: these are new ones.
        self._hours, self._days = hours, days
        self._first = first if reset else self._first
        self._until = until

    def _forget_before(self, first):
        """Drop hours and days that have left every window, so that memory stays bounded."""
        if first.date() <= self._first.date():
            # Once a day is enough.
            return
        self._hours = {
            name: {hour: n for hour, n in hours.items() if hour >= first}
            for name, hours in self._hours.items()
        }
        self._days = {
            name: {day: n for day, n in days.items() if day >= first.date()}
            for name, days in self._days.items()
        }
        self._first = first
