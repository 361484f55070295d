"""Retention: hourly counter rows older than ``COUNTER_HOURS_RETENTION_DAYS`` are deleted.

The totals live in ``counters`` and are never touched; only the hourly history behind the
charts is bounded. Each process of the web server prunes once when it starts counting and
then once a UTC day, on a thread of its own (writer.py starts it), so that no request
waits and no cron is needed. Several processes and dynos may prune at once: on PostgreSQL one
holds an advisory lock for the whole prune and the others skip; on SQLite their deletes take
turns on the write lock and find nothing left to do. Rows go one day per transaction, so that
the first prune of a long history never holds the write lock for long.
"""

import logging
import threading
from datetime import datetime, time, timedelta

import sqlalchemy as sa

from . import clock
from .counter_reads import whole_hour_bound
from .tables import counter_hours, counters

log = logging.getLogger(__name__)

# pg_try_advisory_xact_lock's key for pruning; migrations hold another (engine.py).
PRUNE_LOCK_KEY = 0x72617069_70727565  # "rapi" "prue"


def cutoff(keep_days, now):
    """The first hour kept: midnight UTC ``keep_days`` days before today's."""
    return datetime.combine(now.date() - timedelta(days=keep_days), time.min)


def prune_counter_hours(engine, keep_days, now=None):
    """Delete every hourly row before ``cutoff``; return how many went, or None when another
    process is pruning the same PostgreSQL database."""
    before = cutoff(keep_days, now or clock.utcnow())
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            # A session lock, held over every day's transaction: one pruner at a time.
            if not conn.execute(sa.select(sa.func.pg_try_advisory_lock(PRUNE_LOCK_KEY))).scalar():
                conn.rollback()
                return None
            try:
                return _prune(conn, before)
            finally:
                conn.rollback()
                conn.execute(sa.select(sa.func.pg_advisory_unlock(PRUNE_LOCK_KEY)))
                conn.commit()
        return _prune(conn, before)


def _prune(conn, before):
    """One day's rows per transaction, oldest first, per counter."""
    conn.rollback()
    names = conn.execute(sa.select(counters.c.name).distinct()).scalars().all()
    conn.rollback()
    deleted = 0
    for name in names:
        while True:
            with conn.begin():
                oldest = conn.execute(
                    sa.select(sa.func.min(counter_hours.c.hour)).where(counter_hours.c.name == name)
                ).scalar_one()
                if oldest is None or oldest >= before:
                    break
                upto = min(before, datetime.combine(oldest.date() + timedelta(days=1), time.min))
                gone = conn.execute(
                    sa.delete(counter_hours).where(
                        counter_hours.c.name == name,
                        counter_hours.c.hour < whole_hour_bound(upto),
                    )
                ).rowcount
            if not gone:
                # A row no writer of the service would leave (an hour that is not whole):
                # left for an operator rather than tried forever.
                break
            deleted += gone
    return deleted


def prune_in_background(engine, keep_days):
    """Prune on a daemon thread; a failure is logged and tried again the next day."""

    def prune():
        try:
            deleted = prune_counter_hours(engine, keep_days)
        except Exception as error:  # noqa: BLE001 - the next day's prune tries again
            log.warning("pruning hourly counter rows failed: %s", type(error).__name__)
            return
        if deleted:
            log.info("pruned %d hourly counter rows older than %d days", deleted, keep_days)

    thread = threading.Thread(target=prune, name="counter-hours-retention", daemon=True)
    thread.start()
    return thread
