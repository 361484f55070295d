"""The traffic series with completed hours read once per process (:class:`SeriesCache`).

An hour that has ended does not change once every increment stamped with it has committed,
so each process keeps the completed hours it has read, with their days' sums, and asks the
database only for the hours still open.
"""

import threading
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa

from . import clock
from .counter_reads import HOUR, days_back, hour_totals, hours_back, start_of, whole_hour_bound
from .engine import reading
from .tables import counter_hours, counters

# How long after its end an hour is final. Writers and readers all go by the database's clock
# (clock.py), and a PostgreSQL batch writes nothing when it reaches the server more than
# WRITE_DEADLINE after its stamp, and is cut WRITE_DEADLINE after it began (writer.py),
# so every increment of an hour has committed 20 s after it ends; the rest is room for each
# process's measurement of that clock, whose error is half a round trip. For this minute of
# every hour a view reads the totals and the current hour's rows (see SeriesCache._live).
SEALED_AFTER = timedelta(minutes=1)


def _totals_and_hour_statement(names):
    """Each counter's total and its rows from an hour on, in one statement and so from one
    snapshot: what came before the hour is the one less the other, and in the first minute of
    an hour, the hour before is what remains of the total. Each name is a parameter of its
    own, so that nothing is expanded on each execution."""
    named = [sa.bindparam(f"name_{i}") for i in range(len(names))]
    zero = sa.literal_column("0")
    parts = sa.union_all(
        sa.select(counters.c.name, counters.c.value.label("total"), zero.label("current")).where(
            counters.c.name.in_(named)
        ),
        sa.select(counter_hours.c.name, zero, counter_hours.c.value).where(
            counter_hours.c.name.in_(named),
            counter_hours.c.hour > sa.bindparam("after", type_=sa.DateTime),
        ),
    ).subquery("parts")
    return sa.select(
        parts.c.name, sa.func.sum(parts.c.total), sa.func.sum(parts.c.current)
    ).group_by(parts.c.name)


@dataclass
class Window:
    """One read of the series: ``per_hour`` and ``per_day`` map each counter to its
    ``[(when, count), ...]``, oldest first; the first ``done_hours`` and ``done_days`` of each
    are final. Two reads with the same ``key`` have the same final entries, and ``memo``
    keeps what is built from them until the kept hours move."""

    per_hour: dict
    per_day: dict
    done_hours: int
    done_days: int
    key: tuple
    memo: object


class _Kept:
    """The completed hours [first, until) of each counter and their days' sums, as read at
    one time: replaced when the hours move, never changed, so that a reader can hold on to it
    without a lock. What is derived from them is filled in once, when first asked for."""

    def __init__(self, first, until, hours, days):
        self.first, self.until, self.hours, self.days = first, until, hours, days
        # {name: every count before ``until``}, pruned and never-kept hours included.
        self.before_until = None
        self._memo = {}

    def serves(self, first, until, last):
        """Whether these hours serve a read of [first, until): they start no later, and end
        at ``until`` or, when the read's clock was a moment behind the thread that moved them
        on, an hour after it, but never past the read's current hour."""
        if self.first > first:
            return False
        return self.until == until or until < self.until <= min(last, until + HOUR)

    def memo(self, key, build):
        try:
            return self._memo[key]
        except KeyError:
            value = self._memo[key] = build()
            return value


class SeriesCache:
    """The per-hour and per-day series of some counters, with completed hours read once.

    Hours that ended more than SEALED_AFTER ago are final, and are kept here per process
    with their days' sums, so a read costs the same with two years of history as with one
    day, and every process and dyno shows the same numbers for a completed hour. The kept
    hours move forward once an hour.

    The open hours are read live. When the current hour is the only one, it is the caller's
    fresh total less everything before the hour (one query per hour), so that a view which
    knows its totals, as every counted one does, makes no query for the series at all; this
    rests on what every writer keeps true, that a counter's total is the sum of all its
    hourly rows, pruned ones included. The first minutes of an hour, when the hour before is
    still open, both are read from the database.
    """

    def __init__(self, names):
        self.names = tuple(names)
        self._lock = threading.Lock()
        self._kept = None
        self._totals_and_hour = _totals_and_hour_statement(self.names)
        self._name_params = {f"name_{i}": name for i, name in enumerate(self.names)}

    def read(self, hours, days, now, totals=None):
        """The last ``hours`` hours and ``days`` days up to ``now`` of the counters named in
        ``totals`` (``{name: total now}``), or of every counter when it is None."""
        names = tuple(totals) if totals is not None else self.names
        last, today = clock.hour_of(now), now.date()
        open_from = clock.hour_of(now - SEALED_AFTER)
        first = min(last - timedelta(hours=hours - 1), start_of(today - timedelta(days=days - 1)))
        kept = self._kept_for(first, open_from, last)
        # The kept hours may end an hour later than this read's own clock says: a thread that
        # read the clock a moment later moved them on, and that hour was final when it did.
        open_from = kept.until
        live = self._live(kept, names, open_from, last, totals)
        open_hours = (last - open_from) // HOUR + 1
        open_days = (today - open_from.date()).days + 1
        key = (names, hours, days, last)
        per_hour, per_day = {}, {}
        for name in names:
            done = kept.memo(
                (__name__, "hours", name, *key),
                lambda name=name: _done_hours(kept, name, last, hours, open_hours),
            )
            per_hour[name] = done + [
                (hour, live[name].get(hour, 0)) for hour in hours_back(last, open_hours)
            ]
            done = kept.memo(
                (__name__, "days", name, *key),
                lambda name=name: _done_days(kept, name, today, days, open_days),
            )
            open_counts = {day: kept.days[name].get(day, 0) for day in days_back(today, open_days)}
            for hour, count in live[name].items():
                open_counts[hour.date()] += count
            per_day[name] = done + list(open_counts.items())
        return Window(per_hour, per_day, hours - open_hours, days - open_days, key, kept.memo)

    def _live(self, kept, names, open_from, last, totals):
        """``{name: {hour: count}}`` for the open hours, from the totals where it can be.

        The hours before the open ones are the total less the open hours' rows, read once
        per kept hours. With the current hour the only open one, it is the caller's total
        less those. In the first minutes of an hour, the hour before is still open: the
        totals and the current hour's rows are then read in one statement, and the hour
        before is what remains. A negative count means a total that is not the sum of its
        rows (a database edited by hand); the open hours are then read row by row.
        """
        if totals is not None:
            before = self._before(kept)
            if last == open_from:
                live = {name: {last: totals[name] - before[name]} for name in names}
            else:
                fresh, current = self._totals_and_current(last)
                live = {
                    name: {
                        open_from: fresh[name] - before[name] - current[name],
                        last: current[name],
                    }
                    for name in names
                }
            if all(count >= 0 for hours in live.values() for count in hours.values()):
                return live
        return hour_totals(names, open_from, last)

    def _before(self, kept):
        """Every count before the kept hours' end, read once per kept hours."""
        before = kept.before_until
        if before is None:
            with self._lock:
                if kept.before_until is None:
                    totals, from_until = self._totals_and_current(kept.until)
                    kept.before_until = {name: totals[name] - from_until[name] for name in totals}
                before = kept.before_until
        return before

    def _totals_and_current(self, hour):
        """``({name: total}, {name: count of hour and after})``, from one snapshot."""
        params = {**self._name_params, "after": whole_hour_bound(hour)}
        with reading() as conn:
            rows = conn.execute(self._totals_and_hour, params).all()
        totals = dict.fromkeys(self.names, 0)
        current = dict.fromkeys(self.names, 0)
        for name, total, count in rows:
            totals[name], current[name] = int(total), int(count)
        return totals, current

    def _kept_for(self, first, until, last):
        """The completed hours up to ``until`` (or an hour later, see ``serves``), read from
        the database only where they were not read before."""
        kept = self._kept
        if kept is not None and kept.serves(first, until, last):
            return kept
        with self._lock:
            kept = self._kept
            if kept is not None and kept.serves(first, until, last):
                return kept
            if kept is None or until < kept.until or first < kept.first:
                # The first read, a clock that went back (tests move it), or a longer window.
                kept = self._kept = _read_kept(self.names, first, until, None)
            else:
                kept = self._kept = _read_kept(self.names, first, until, kept)
            return kept


def _done_hours(kept, name, last, hours, open_hours):
    counts = kept.hours[name]
    return [(hour, counts.get(hour, 0)) for hour in hours_back(last, hours)[: hours - open_hours]]


def _done_days(kept, name, today, days, open_days):
    counts = kept.days[name]
    return [(day, counts.get(day, 0)) for day in days_back(today, days)[: days - open_days]]


def _read_kept(names, first, until, previous):
    """The completed hours [first, until): those of ``previous`` that are still in the
    window, and the rest read from the database."""
    start = first if previous is None else previous.until
    read = hour_totals(names, start, until - HOUR) if until > start else {}
    hours, days = {}, {}
    for name in names:
        old_hours = {} if previous is None else previous.hours[name]
        hours[name] = {hour: n for hour, n in old_hours.items() if hour >= first}
        hours[name].update(read.get(name, {}))
        days[name] = per_day = {}
        for hour, count in hours[name].items():
            per_day[hour.date()] = per_day.get(hour.date(), 0) + count
    return _Kept(first, until, hours, days)
