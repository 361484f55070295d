"""What makes Flask-Limiter cheap per request: limits parsed once, and an exact memory store.

Flask-Limiter re-reads and re-parses every limit string on every request, and limits'
``memory://`` storage starts a timer thread every few milliseconds under load and can admit a
few more than its limit under concurrency. Here each limit is parsed once
(:class:`ParsedOnce`), and ``memory://`` with the default fixed window runs on
:class:`FixedWindowMemory`, which expires counts as it reads them, under one lock, with no
thread. Together they cut the limiter's cost per request to under half (BENCHMARKS.md).
"""

import dataclasses
import threading
import time

from flask_limiter import ApplicationLimit
from flask_limiter._limits import RuntimeLimit
from limits.storage import Storage

# The scheme memory:// becomes when the strategy is the fixed window.
FIXED_WINDOW_MEMORY = "fixed-window-memory"


class FixedWindowMemory(Storage):
    """limits' storage interface for fixed windows, in this process's memory, exact and lazy.

    Replaces limits' ``MemoryStorage`` (checked against limits 5.8) for the fixed window:
    that one arms a ``threading.Timer`` after every increment to expire keys, and takes a
    per-key lock that expiry may drop while another thread holds it. Here one lock guards
    every count, a count past its expiry reads as zero and starts a new window, and expired
    keys are swept in passing once every ``SWEEP_EVERY`` new windows.
    """

    STORAGE_SCHEME = [FIXED_WINDOW_MEMORY]
    SWEEP_EVERY = 1024

    def __init__(self, uri=None, wrap_exceptions=False, **options):
        self._lock = threading.Lock()
        # key -> [count, expiry as a time.time() value]
        self._windows = {}
        self._opened = 0
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)

    @property
    def base_exceptions(self):
        return ValueError

    def _live(self, key, now):
        window = self._windows.get(key)
        if window is not None and window[1] <= now:
            del self._windows[key]
            return None
        return window

    def incr(self, key, expiry, amount=1):
        now = time.time()
        with self._lock:
            window = self._live(key, now)
            if window is None:
                window = self._windows[key] = [0, now + expiry]
                self._opened += 1
                if self._opened % self.SWEEP_EVERY == 0:
                    self._sweep(now)
            window[0] += amount
            return window[0]

    def decr(self, key, amount=1):
        with self._lock:
            window = self._live(key, time.time())
            if window is None:
                return 0
            window[0] = max(window[0] - amount, 0)
            return window[0]

    def get(self, key):
        with self._lock:
            window = self._live(key, time.time())
            return 0 if window is None else window[0]

    def get_expiry(self, key):
        now = time.time()
        with self._lock:
            window = self._live(key, now)
            return now if window is None else window[1]

    def check(self):
        return True

    def reset(self):
        with self._lock:
            cleared = len(self._windows)
            self._windows.clear()
        return cleared

    def clear(self, key):
        with self._lock:
            self._windows.pop(key, None)

    def _sweep(self, now):
        for key in [key for key, (_, expiry) in self._windows.items() if expiry <= now]:
            del self._windows[key]


@dataclasses.dataclass(eq=False)
class KeptLimit(RuntimeLimit):
    """A runtime limit built once and kept: equal only to itself, so hashing it is cheap.

    Flask-Limiter puts runtime limits in sets on every request, and the dataclass hash it
    gives them walks every field each time.
    """

    __eq__ = object.__eq__
    __hash__ = object.__hash__


class ParsedOnce(ApplicationLimit):
    """An application limit whose limit string is parsed once, not on every request.

    Flask-Limiter (checked against 4.1) turns a limit's string into new runtime limits each
    time it evaluates the limit, which is every request; for a fixed string the result is
    the same every time, so it is built once and kept.
    """

    def __iter__(self):
        kept = self.__dict__.get("_kept")
        if kept is None:
            kept = tuple(
                KeptLimit(**{field.name: getattr(limit, field.name) for field in FIELDS})
                for limit in super().__iter__()
            )
            self.__dict__["_kept"] = kept
        return iter(kept)


FIELDS = dataclasses.fields(RuntimeLimit)
