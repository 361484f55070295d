"""The one clock the stored times come from, so that a test can move it in one place."""

from datetime import UTC, datetime


def utcnow():
    """Naive UTC, the one time format stored in every column on every backend."""
    return datetime.now(UTC).replace(tzinfo=None)


def hour_of(moment):
    """The hour a moment falls in."""
    return moment.replace(minute=0, second=0, microsecond=0)


def current_hour():
    """The UTC hour an increment made now belongs to."""
    return hour_of(utcnow())
