"""Deadlines on the request path's database work, kept on this side of the network.

PostgreSQL's ``statement_timeout`` ends a statement the server runs for too long, and
``tcp_user_timeout`` drops a connection whose bytes go unacknowledged. Neither fires when
something on the path still acknowledges bytes while nothing answers: a stopped host whose
kernel keeps acknowledging, or a pooler such as PgBouncer that queues the query. The driver
then waits for as long as the stall lasts, and so does the request.

So every use of a PostgreSQL connection on the request path is watched: the reads of
``engine.reading()`` (token checks and their ``last_used_at`` write included), the counter
writer's batches, and the statements that set up a new connection. Each registers the
connection's socket with a deadline, its statement timeout plus :data:`MARGIN` (the server's
own timeout fires first while the server is alive), and unregisters when done: a dict set and
pop under a lock, about a microsecond. One daemon thread per process looks every
:data:`INTERVAL` seconds and shuts down the socket of any use past its deadline. The driver's
wait then ends with a connection error, SQLAlchemy drops the connection (and, for a pooled one,
every connection opened before it), and errors.py answers 503 with Retry-After.

Migrations, CLI commands and the background pruning never register: they may take as long
as their work needs. ``DB_STATEMENT_TIMEOUT_MS=0`` (no limit) registers nothing either.
"""

import os
import socket
import threading
import time
from contextlib import contextmanager

# How far past its statement timeout a use of a connection is cut.
MARGIN = 1.0
# How often the watchdog looks; a use is cut at most this long after its deadline.
INTERVAL = 0.25

# The key under which a pooled connection's record keeps ``(socket, patience)``.
WATCHED = "api.deadline"


def patience(statement_timeout_ms):
    """Seconds a use of a connection may take, or None for no limit (a timeout of 0)."""
    return statement_timeout_ms / 1000 + MARGIN if statement_timeout_ms else None


def socket_of(dbapi_connection):
    """The connection's socket as ``(descriptor, inode)``: the inode tells the socket apart
    from whatever takes the descriptor once the connection has closed it."""
    fd = dbapi_connection.fileno()
    return fd, os.fstat(fd).st_ino


class Watchdog:
    """The uses in progress in this process, and the thread that cuts those past their
    deadline."""

    def __init__(self):
        self._forget()
        # A forked worker inherits neither the thread nor, safely, the lock.
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self):
        self._lock = threading.Lock()
        self._due = {}
        self._running = False

    def watch(self, sock, deadline):
        """Cut ``sock`` if it is still watched at ``deadline`` (``time.monotonic()``)."""
        if not self._running:
            self._start()
        with self._lock:
            self._due[sock] = deadline

    def unwatch(self, sock):
        """Stop watching ``sock``; False when it was cut."""
        with self._lock:
            return self._due.pop(sock, None) is not None

    def _start(self):
        with self._lock:
            if self._running:
                return
            self._running = True
        threading.Thread(target=self._run, name="database-deadlines", daemon=True).start()

    def _run(self):
        while True:
            time.sleep(INTERVAL)
            now = time.monotonic()
            # Cut under the lock: once unwatched, a pooled connection may be handed to another
            # request at once, and a cut decided earlier must not reach that one.
            with self._lock:
                for sock in [sock for sock, due in self._due.items() if due <= now]:
                    del self._due[sock]
                    shut_down(sock)


def shut_down(sock):
    """Shut down both directions of a socket, through a duplicate of its descriptor, unless the
    descriptor now names another socket."""
    fd, inode = sock
    try:
        duplicate = os.dup(fd)
    except OSError:
        return
    if os.fstat(duplicate).st_ino != inode:
        os.close(duplicate)
        return
    with socket.socket(fileno=duplicate) as dup:
        try:
            dup.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


_watchdog = Watchdog()
watch = _watchdog.watch
unwatch = _watchdog.unwatch


@contextmanager
def watching(sock, patience):
    """Watch a socket for the length of a ``with`` block; a patience of None watches nothing."""
    if not patience:
        yield
        return
    watch(sock, time.monotonic() + patience)
    try:
        yield
    finally:
        unwatch(sock)
