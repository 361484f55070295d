"""Flask-Limiter and limits: the per-request state looked up once a visit, limits parsed once,
and an exact, bounded memory store for the fixed window."""

import collections
import dataclasses
import math
import threading
import time

from flask.globals import _cv_request
from flask_limiter import ApplicationLimit, Limiter
from flask_limiter._limits import RuntimeLimit
from limits.storage import Storage

# The scheme memory:// becomes when the strategy is the fixed window.
FIXED_WINDOW_MEMORY = "fixed-window-memory"


class RequestLimiter(Limiter):
    """Flask-Limiter, keeping its per-request state on the request context it is read from.

    Flask-Limiter 4.1.1 reaches that state through a property that resolves the request
    context through a proxy twice a visit, and it visits eight times a request; this one looks
    the context up once a visit, in Flask's own context variable (``_cv_request``, private in
    Flask 3.1.3), and asks the library's own property for the state the first time.
    """

    @property
    def context(self):
        ctx = _cv_request.get()
        try:
            return ctx.api_limiter_context
        except AttributeError:
            found = ctx.api_limiter_context = Limiter.context.fget(self)
            return found


@dataclasses.dataclass(eq=False)
class KeptLimit(RuntimeLimit):
    """A runtime limit built once and kept: equal only to itself, so hashing it is cheap.

    Flask-Limiter 4.1.1 puts runtime limits in sets on every request, and the dataclass hash
    it gives them (``flask_limiter._limits.RuntimeLimit``, private) walks every field each
    time.
    """

    __eq__ = object.__eq__
    __hash__ = object.__hash__


FIELDS = dataclasses.fields(RuntimeLimit)


def fields_of(limit):
    """A runtime limit's fields, by name: what a kept limit copies from the library's own."""
    return {field.name: getattr(limit, field.name) for field in FIELDS}


class ParsedOnce(ApplicationLimit):
    """An application limit whose limit string is parsed once, not on every request.

    Flask-Limiter 4.1.1 turns a limit's string into new runtime limits each time it
    evaluates the limit, which is every request; for a given string the result is the same
    every time, so it is built once per string (a limit given as a function, such as each
    token's own, may name several) and kept.
    """

    # Strings kept per limit; more are parsed anew, the first ones kept.
    MOST_KEPT = 1024

    def __iter__(self):
        provider = self.limit_provider
        text = provider() if callable(provider) else provider
        kept = self.__dict__.setdefault("_kept", {})
        found = kept.get(text)
        if found is None:
            found = tuple(KeptLimit(**fields_of(limit)) for limit in self._parse(text))
            if len(kept) < self.MOST_KEPT:
                kept[text] = found
        return iter(found)

    def _parse(self, text):
        """The library's own runtime limits for ``text``, from a copy of this limit that names
        it (this one may be evaluated by another thread meanwhile)."""
        copy = dataclasses.replace(self, limit_provider=text)
        if "limiter" in self.__dict__:
            copy.limiter = self.limiter
        return list(ApplicationLimit.__iter__(copy))


class FixedWindowMemory(Storage):
    """limits' storage interface for fixed windows, in this process's memory: exact, lazy and
    bounded.

    Replaces limits 5.8.0's ``MemoryStorage`` for the fixed window:
    that one arms a ``threading.Timer`` after every increment to expire keys, takes a
    per-key lock that expiry may drop while another thread holds it, and keeps a key for
    every client address it has seen until its window ends, a day for the failed-token
    budget. Here one lock guards every count, and a count past its expiry reads as zero and
    starts a new window. Windows of one length end in the order they opened, so each length
    keeps a queue of them in that order: every new window retires at most ``RETIRE_AT_ONCE``
    ended ones from the queues' fronts, so no request walks every key.

    At most ``MAX_WINDOWS`` windows are kept (about 290 bytes each, some 18 MiB). A new one
    beyond that drops the window closest to its end first. That is the trade: a flood of new
    addresses can end other addresses' windows early, giving those a fresh budget, rather than
    grow a worker until the platform kills it. Redis storage keeps every window.
    """

    STORAGE_SCHEME = [FIXED_WINDOW_MEMORY]
    MAX_WINDOWS = 65_536
    RETIRE_AT_ONCE = 8

    def __init__(self, uri=None, wrap_exceptions=False, **options):
        self._lock = threading.Lock()
        # key -> [count, expiry as a time.time() value]
        self._windows = {}
        # window length -> deque of (expiry, key, window), in the order the windows opened
        self._ending = {}
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

    def _open(self, key, length, now):
        """A new window for ``key``; ended windows retired and the total bounded first."""
        self._retire(now, self.RETIRE_AT_ONCE)
        while len(self._windows) >= self.MAX_WINDOWS:
            self._retire(math.inf, 1)
        window = self._windows[key] = [0, now + length]
        queue = self._ending.get(length)
        if queue is None:
            queue = self._ending[length] = collections.deque()
        queue.append((window[1], key, window))
        return window

    def _retire(self, until, most):
        """Drop up to ``most`` windows ending by ``until``, those that end first first."""
        for _ in range(most):
            fronts = [queue for queue in self._ending.values() if queue and queue[0][0] <= until]
            if not fronts:
                return
            expiry, key, window = min(fronts, key=lambda queue: queue[0][0]).popleft()
            # The key may have opened a newer window since; that one stays.
            if self._windows.get(key) is window:
                del self._windows[key]

    def incr(self, key, expiry, amount=1):
        now = time.time()
        with self._lock:
            window = self._live(key, now)
            if window is None:
                window = self._open(key, expiry, now)
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
            self._ending.clear()
        return cleared

    def clear(self, key):
        with self._lock:
            self._windows.pop(key, None)
