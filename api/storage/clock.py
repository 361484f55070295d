"""The one clock stored times come from: the database's, so that every process and dyno agrees
on which hour a hit belongs to and when an hour is over.

Writers stamp each batch with its hour by this clock, and readers take an hour as final by it
(series.py); a dyno whose own clock is off, by a second or by minutes, stamps and reads as
every other does. On PostgreSQL each process measures how far the server's clock is from its
own monotonic clock (``SELECT clock_timestamp()`` between two readings of it: the error is at
most half the round trip) when it opens a connection and again every hour, and reads the
server's time from then on as its monotonic clock plus that offset, so that even a step of the
system clock changes nothing. SQLite is a file on this machine: its processes share one clock,
and no offset is measured.

Tests move ``utcnow``, the clock hours are stamped and read by. ``seconds`` is the real time that
deadlines are counted in (postgresql_writer.py), and moves with nothing.
"""

import time
from datetime import UTC, datetime

# Measurements are taken at most this often, and dropped when their round trip took longer
# than MAX_ROUND_TRIP: half of it would be their error.
MEASURE_EVERY = 3600
MAX_ROUND_TRIP = 1.0

# This machine's clock, in seconds since the epoch; read only until the database's is known.
system_time = time.time

# The database's time less time.monotonic(), in seconds, and when it was measured (monotonic);
# None until a PostgreSQL connection of this process has measured it.
offset = None
measured_at = None

DATABASE_TIME = "SELECT clock_timestamp()"


def seconds():
    """Now, in seconds since the epoch, on the database's clock once it is known."""
    known = offset
    if known is None:
        return system_time()
    return time.monotonic() + known


def utcnow():
    """Naive UTC, the one time format stored in every column on every backend."""
    return datetime.fromtimestamp(seconds(), UTC).replace(tzinfo=None)


def hour_of(moment):
    """The hour a moment falls in."""
    return moment.replace(minute=0, second=0, microsecond=0)


def current_hour():
    """The UTC hour an increment made now belongs to."""
    return hour_of(utcnow())


def due():
    """Whether this process should measure the database's clock on its next round trip."""
    return measured_at is None or time.monotonic() - measured_at >= MEASURE_EVERY


def measure(dbapi_connection):
    """Measure the database server's clock on a PostgreSQL connection in autocommit mode, and
    read time by it from now on; a measurement whose round trip was too slow is dropped, and
    taken again on the next connection or batch."""
    global offset, measured_at
    before = time.monotonic()
    server = dbapi_connection.execute(DATABASE_TIME).fetchone()[0]
    after = time.monotonic()
    if after - before <= MAX_ROUND_TRIP:
        offset = server.timestamp() - (before + after) / 2
        measured_at = after
