"""Request bodies, received whole before the app sees them, so that a body that arrives slowly
or never holds no more threads than it may.

A WSGI app reads its body from ``wsgi.input``, and a read blocks its thread until the bytes
arrive. granian keeps no timeout on a body (upstream's answer is "won't fix", issue 728),
gunicorn keeps none either, and neither lets Python interrupt a read that waits. Nor can the
wait be handed to another thread: under granian 2.8.9, a request answered while another thread
is still reading its body stalls the whole worker until that read ends (the thread that
answered waits for the read, holding the GIL). So the serving thread reads its own body, when
the app first reads ``wsgi.input`` (:class:`ArrivingBody`), in steps
(:meth:`BodyReceiver.receive`): a step asks for one byte, then for as many as have come so far
while they are already there, and for one again once a step had to wait. Every decision below
is taken between two steps, so a body that drips is looked at again with each byte.

- **A body that came with its request is served from memory.** A body whole within ``GRACE``
  (0.1 s) of the first read needs no slot. Every ordinary client sends its body so: no number
  of concurrent ordinary POSTs is turned away.
- **A slow body keeps a thread waiting only in a slot.** A body still arriving after the
  grace is slow. Its thread keeps reading only if one of ``slots`` (half of ``WEB_THREADS``,
  none for a single thread) is free; otherwise the request is answered ``503`` with
  ``Retry-After`` at the body's next byte.
- **At most ``readers`` threads read bodies at once**, one more than the slots (but never all
  of several threads): a body that finds them all busy for the grace is answered ``503``. The
  other threads never touch a body, so requests without one are served whatever bodies do.
- **The whole body arrives within REQUEST_BODY_TIMEOUT, counted from when the request reached
  the app, or the request is answered 408.** It bounds the whole body, not the silence between
  its bytes: a body dripped a byte at a time is cut off at its first byte past the deadline.
- **A cut-off body is never taken for a whole one.** Fewer bytes than ``Content-Length``
  followed by the end of the stream is a ``400``, or a ``408`` when the watchdog ended it.
  (granian hands a truncated body over as if it were complete; this is where that is caught.)

Only bodies the app may take are received: a ``Content-Length`` over ``MAX_CONTENT_LENGTH`` is
left for the app's ``413``, which reads nothing. Each refusal is raised by ``wsgi.input`` when
the app reads it, as the Werkzeug exception for its status, so that the app answers it like any
error of its own: in the envelope, counted as a hit and an error. A view that never reads its
body is answered as usual, without waiting for it.

A step that waits cannot be called off, so a watchdog thread ends the ones that must end. While
a body has been arriving for longer than the deadline, it looks at this process's connections
on the listening port (``/proc`` and ``TCP_INFO``) and shuts down the reading side of two kinds,
so that their reads return short: one in the middle of a request that has received nothing for
the deadline (a stalled body), and one that is still receiving more than the deadline plus
``HEAD_SECONDS`` after it last sent anything (a body past its deadline: no request's head and
body take longer, so this ends a step left waiting on many bytes by a body that turned slow).

What slow bodies can hold, then: the slots, each until the deadline; the reader beyond them,
where there is one, until its body's next byte, or until the deadline for a body that stalls.
The threads that are not readers never wait on a body.
"""

import io
import os
import threading
import time

from werkzeug.exceptions import BadRequest, HTTPException, RequestTimeout, ServiceUnavailable

from .. import errors
from .connections import overdue_connections, shut_reading_side

# How long a body may take to arrive before it is slow and needs a slot; also how long a body
# waits for a free reader. A body sent with its request, or right behind its head, is whole
# well within it, even on a loaded machine; a worker of one thread is held no longer than this
# and one more byte by a body that drips.
GRACE = 0.1

# A step that returns sooner than this found its bytes already there, so the next may ask for
# more; a step that waited longer is followed by a one-byte step.
INSTANT = 0.01

# The longest a connection may idle before a request and send its head: the server closes it
# then (HEADER_READ_TIMEOUT_MS in server.py).
HEAD_SECONDS = 5

# How often the watchdog looks while a body is overdue.
WATCH_INTERVAL = 0.5


def late_message(timeout):
    """The 408 message, naming the deadline so that a client knows what it missed."""
    return f"The request body did not arrive in time: all of it must arrive within {timeout:g} s"


TRUNCATED = "The request body ended before the length its Content-Length header gave"
TOO_MANY_SLOW_BODIES = (
    "Too many request bodies are arriving slowly; retry after the seconds in Retry-After"
)


def readers_for(threads):
    """Threads that may read bodies at once: one more than the slots, but never every thread
    of several, and the only one of one."""
    return max(1, min(threads - 1, threads // 2 + 1))


class BodyReceiver:
    """One per app: the readers and slots that bodies are received in, and the watchdog that
    ends reads that must end. The watchdog starts with a process's first body, so that every
    worker forked from the app has its own."""

    def __init__(self, timeout, slots, readers, max_length):
        self.timeout = timeout
        self.slots = max(0, slots)
        self.max_length = max_length
        self._readers = threading.BoundedSemaphore(max(1, readers))
        self._lock = threading.Lock()
        # Threads reading a slow body, each in a slot.
        self._slow = 0
        # One entry per body being received: (when its first read began, the listening port).
        self._receiving = {}
        self._watchdog_pid = None
        # When the watchdog last ended reads (time.monotonic()): a read that ends short after
        # it did was cut off, not truncated by its client.
        self._cut_at = float("-inf")

    def wrap(self, environ):
        """Put an :class:`ArrivingBody` in front of ``wsgi.input`` when the request declares a
        body the app may take."""
        try:
            length = int(environ["CONTENT_LENGTH"])
        except (KeyError, ValueError):
            return
        if length <= 0 or (self.max_length is not None and length > self.max_length):
            return
        try:
            port = int(environ.get("SERVER_PORT") or 0)
        except ValueError:
            port = 0
        environ["wsgi.input"] = ArrivingBody(
            self, environ["wsgi.input"], length, port, time.monotonic()
        )

    def receive(self, stream, length, port, began):
        """The whole body, or the refusal the request is to be answered with."""
        if not self._readers.acquire(timeout=GRACE):
            raise self._too_many()
        key = self._start(port)
        slot = False
        try:
            chunks, received, size = [], 0, 1
            first = time.monotonic()
            while received < length:
                now = time.monotonic()
                # Within its grace a body is read whatever the time: a whole body is never
                # refused for the time the app took before it read.
                if now - first >= GRACE:
                    if now >= began + self.timeout:
                        raise RequestTimeout(description=late_message(self.timeout))
                    if not slot:
                        slot = self._take_slot()
                        if not slot:
                            raise self._too_many()
                # Always with a size: granian's read() without one drops whatever an earlier
                # sized read left in its buffer.
                chunk = stream.read(min(size, length - received))
                if not chunk:
                    # Ended by the watchdog during this step (its connection had received
                    # nothing for the deadline, counted from the bytes' arrival, which may be
                    # well before the request reached the app), or past the deadline: stalled.
                    if self._cut_at >= now or time.monotonic() >= began + self.timeout:
                        raise RequestTimeout(description=late_message(self.timeout))
                    raise BadRequest(description=TRUNCATED)
                chunks.append(chunk)
                received += len(chunk)
                size = received if time.monotonic() - now < INSTANT else 1
            return b"".join(chunks)
        finally:
            if slot:
                self._give_slot()
            self._end(key)
            self._readers.release()

    def _too_many(self):
        return ServiceUnavailable(
            description=TOO_MANY_SLOW_BODIES, retry_after=errors.RETRY_AFTER_SECONDS
        )

    def _take_slot(self):
        with self._lock:
            if self._slow >= self.slots:
                return False
            self._slow += 1
            return True

    def _give_slot(self):
        with self._lock:
            self._slow -= 1

    def _start(self, port):
        key = object()
        with self._lock:
            self._receiving[key] = (time.monotonic(), port)
            if self._watchdog_pid != os.getpid():
                # Started with the first body of each process: a forked worker has none.
                self._watchdog_pid = os.getpid()
                threading.Thread(target=self._watch, name="body-watchdog", daemon=True).start()
        return key

    def _end(self, key):
        with self._lock:
            del self._receiving[key]

    def _overdue_ports(self):
        """The listening ports of bodies that have been arriving for longer than the deadline."""
        cutoff = time.monotonic() - self.timeout
        with self._lock:
            return {port for began, port in self._receiving.values() if began <= cutoff and port}

    def _watch(self):
        limit_ms = int(self.timeout * 1000)
        while True:
            time.sleep(WATCH_INTERVAL)
            for port in self._overdue_ports():
                for connection in overdue_connections(port, limit_ms, HEAD_SECONDS * 1000):
                    self._cut_at = time.monotonic()
                    shut_reading_side(connection)


class ArrivingBody:
    """``wsgi.input`` for one request with a body: on the first read, the whole body is
    received (:meth:`BodyReceiver.receive`) and every read is served from it; a refusal is
    raised again by every later read."""

    def __init__(self, receiver, stream, length, port, began):
        self._receiver = receiver
        self._stream = stream
        self._length = length
        self._port = port
        self._began = began
        self._body = None
        self._refusal = None

    def _received(self):
        if self._refusal is not None:
            raise self._refusal
        if self._body is None:
            try:
                data = self._receiver.receive(self._stream, self._length, self._port, self._began)
            except HTTPException as refusal:
                self._refusal = refusal
                raise
            self._body = io.BytesIO(data)
        return self._body

    def read(self, size=-1):
        return self._received().read(size)

    def readline(self, size=-1):
        return self._received().readline(size)

    def readlines(self, hint=-1):
        return self._received().readlines(hint)

    def __iter__(self):
        return iter(self._received())
