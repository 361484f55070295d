"""What an operator may ask of a token: a lifetime, an expiry date, scopes, a rate limit.

The CLI (``api/cli.py``) reads each from its command line with these, and refuses anything
else with one line before it writes anything; the app reads ``TOKEN_DEFAULT_EXPIRES_IN`` with
the same rule at start.
"""

import re
from datetime import UTC, date, datetime, timedelta

from limits import parse_many

from .auth import SCOPES

# A lifetime is a whole number and a unit: 90d, 12h, 30m, 45s.
DURATION = re.compile(r"([0-9]+)([smhd])")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
DURATION_RULE = "a whole number and a unit, s, m, h or d (90d, 12h)"


class BadTerm(ValueError):
    """A term the operator asked for that cannot be: its message says which and why."""


def duration(text, what="a lifetime"):
    """A positive lifetime such as ``90d``, as a timedelta."""
    found = DURATION.fullmatch(text.strip())
    if found is None:
        raise BadTerm(f"{text!r} is not {what}: it must be {DURATION_RULE}")
    amount = int(found.group(1))
    if amount == 0:
        raise BadTerm(f"{text!r} is not {what}: it must be more than zero")
    try:
        return timedelta(**{UNITS[found.group(2)]: amount})
    except OverflowError:
        raise BadTerm(f"{text!r} is not {what}: it is too long") from None


def expiry_date(text, now):
    """An expiry given as a UTC date (``2027-03-01``, its midnight) or date and time
    (``2027-03-01T12:00``), which must lie after ``now``."""
    try:
        if len(text.strip()) == 10:
            moment = datetime.combine(date.fromisoformat(text.strip()), datetime.min.time())
        else:
            moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadTerm(
            f"{text!r} is not a date: write it as 2027-03-01 or 2027-03-01T12:00 (UTC)"
        ) from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    if moment <= now:
        raise BadTerm(f"{text!r} is in the past: a token must expire after now")
    return moment


def scopes(values):
    """The scopes named in ``values``, each a name or several joined by commas; None when none
    are named, which is every scope."""
    named = {name.strip() for value in values for name in value.split(",") if name.strip()}
    if not values:
        return None
    unknown = sorted(named - set(SCOPES))
    if unknown or not named:
        raise BadTerm(
            f"{', '.join(map(repr, unknown)) or 'no scope'} is not a scope: the scopes are "
            + ", ".join(SCOPES)
        )
    return frozenset(named)


def rate(text):
    """A rate limit in Flask-Limiter's notation (``600 per minute``, ``10/second``)."""
    try:
        parsed = parse_many(text)
    except ValueError:
        parsed = []
    if not parsed:
        raise BadTerm(f"{text!r} is not a rate limit: write it as '600 per minute' or '10/second'")
    if any(item.amount < 1 for item in parsed):
        raise BadTerm(f"{text!r} allows no request: a rate limit allows at least one")
    return text.strip()
