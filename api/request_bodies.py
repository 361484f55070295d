"""Request bodies that arrive slowly or never: a deadline that the server itself does not keep.

A WSGI app reads its body from ``wsgi.input``, and a read blocks its thread until the bytes
arrive. granian keeps no timeout on a body (upstream's answer is "won't fix", issue 728), and
gunicorn keeps none either, so a client that declares a body and then sends nothing would hold
a thread for as long as it keeps the connection open; a few such clients hold them all.
:class:`BodyReader` and :class:`BodyDeadline` bound that, under any server:

- **A stall is cut off.** A read that has waited ``REQUEST_BODY_TIMEOUT`` seconds with no byte
  arriving is ended, and the request is answered ``408``. Like nginx's ``client_body_timeout``,
  the deadline is for silence, not for the whole body. The read cannot be interrupted from
  Python, so a watchdog thread ends it from outside: it finds this process's connections on
  the listening port that have received nothing for that long (``/proc`` and ``TCP_INFO``)
  and shuts down their reading side. The blocked read then returns short, and the answer still
  goes out on the writing side.
- **Slow bodies cannot take every thread.** At most ``slots`` threads of a process may wait on
  body bytes at once (half of ``WEB_THREADS``); a request whose body would make one more wait
  is answered ``503`` with ``Retry-After`` at once. Requests without a body, and bodies that
  arrive with their request as every ordinary client sends them, never wait, so they are
  served whatever slow clients do.
- **A cut-off body is never taken for a whole one.** Reading ends exactly at
  ``Content-Length``; fewer bytes followed by the end of the stream is a ``400``. (granian
  hands a truncated body over as if it were complete; this is where that is caught.)

The watchdog only looks when a read has been waiting longer than the deadline, so it costs
nothing while clients behave. A connection it shuts down is one that has received nothing for
the whole deadline while a body read waited: idle keep-alive connections are closed by the
server after 5 s, well inside it. Its one blind spot is a drip, a byte now and then, which
the deadline for silence does not catch; the slots bound what a drip can hold.
"""

import os
import socket
import struct
import threading
import time
from dataclasses import dataclass

from werkzeug.exceptions import BadRequest, RequestTimeout, ServiceUnavailable

# TCP_ESTABLISHED in /proc/net/tcp, and where tcpi_last_data_recv sits in struct tcp_info:
# after eight one-byte fields, the twelfth 32-bit field (linux/tcp.h).
_ESTABLISHED = "01"
_TCP_INFO = struct.Struct("8B12I")
_TCP_INFO_LAST_DATA_RECV = 8 + 11

# How often the watchdog looks while a read is waiting.
WATCH_INTERVAL = 0.5

# Seconds a client refused for want of a slot should wait before trying again.
RETRY_AFTER_SECONDS = 5


def stalled_message(timeout):
    """The 408 message, naming the deadline so that a client knows what it missed."""
    return f"The request body stalled: nothing arrived for {timeout:g} s"


TRUNCATED = "The request body ended before the length its Content-Length header gave"
TOO_MANY_SLOW_BODIES = (
    "Too many request bodies are arriving slowly; retry after the seconds in Retry-After"
)


class BodyDeadline:
    """One per process: the threads waiting on body bytes, and the watchdog that ends stalls."""

    def __init__(self, timeout, slots):
        self.timeout = timeout
        self.slots = max(1, slots)
        self._lock = threading.Lock()
        # One entry per read in progress: (when it began, the listening port).
        self._waiting = {}
        self._watchdog_pid = None

    def wrap(self, environ):
        """Put a reader in front of ``wsgi.input`` when the request declares a body."""
        try:
            length = int(environ["CONTENT_LENGTH"])
        except (KeyError, ValueError):
            return
        if length <= 0:
            return
        try:
            port = int(environ.get("SERVER_PORT") or 0)
        except ValueError:
            port = 0
        environ["wsgi.input"] = BodyReader(environ["wsgi.input"], length, self, port)

    def begin(self, port):
        """Register a read about to wait, or refuse it when every slot is taken."""
        now = time.monotonic()
        key = object()
        with self._lock:
            if len(self._waiting) >= self.slots:
                raise ServiceUnavailable(
                    description=TOO_MANY_SLOW_BODIES, retry_after=RETRY_AFTER_SECONDS
                )
            self._waiting[key] = (now, port)
            if self._watchdog_pid != os.getpid():
                # Started on the first body read of each process: a forked worker has none.
                self._watchdog_pid = os.getpid()
                threading.Thread(target=self._watch, name="body-deadline", daemon=True).start()
        return key, now

    def end(self, key):
        with self._lock:
            self._waiting.pop(key, None)

    def _overdue_ports(self):
        """The listening ports of reads that have waited past the deadline."""
        cutoff = time.monotonic() - self.timeout
        with self._lock:
            return {port for began, port in self._waiting.values() if began <= cutoff and port}

    def _watch(self):
        while True:
            time.sleep(WATCH_INTERVAL)
            for port in self._overdue_ports():
                for connection in silent_connections(port, int(self.timeout * 1000)):
                    shut_reading_side(connection)


@dataclass
class BodyReader:
    """``wsgi.input`` for one request: exactly ``Content-Length`` bytes, each wait bounded."""

    _stream: object
    _remaining: int
    _deadline: BodyDeadline
    _port: int

    def read(self, size=-1):
        if self._remaining <= 0:
            return b""
        want = self._remaining if size is None or size < 0 else min(size, self._remaining)
        if want == 0:
            return b""
        key, began = self._deadline.begin(self._port)
        try:
            data = self._stream.read(want)
        finally:
            self._deadline.end(key)
        if len(data) < want:
            if time.monotonic() - began >= self._deadline.timeout:
                raise RequestTimeout(description=stalled_message(self._deadline.timeout))
            raise BadRequest(description=TRUNCATED)
        self._remaining -= len(data)
        return data

    def readline(self, size=-1):
        # Form and JSON parsing read in blocks; a line reader is here for completeness, and
        # reads one byte at a time so that it never reads past a line.
        line = bytearray()
        while (size is None or size < 0 or len(line) < size) and (byte := self.read(1)):
            line += byte
            if byte == b"\n":
                break
        return bytes(line)

    def __iter__(self):
        while line := self.readline():
            yield line

    def close(self):
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


def silent_connections(port, idle_ms):
    """This process's established TCP connections on ``port`` (the server's side) that have
    received no data for at least ``idle_ms``, as (file descriptor, inode) pairs."""
    inodes = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes[target[8:-1]] = int(name)
    found = []
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        try:
            with open(table) as rows:
                next(rows, None)
                for row in rows:
                    fields = row.split()
                    if len(fields) < 10 or fields[3] != _ESTABLISHED:
                        continue
                    if int(fields[1].rsplit(":", 1)[1], 16) != port:
                        continue
                    fd = inodes.get(fields[9])
                    if fd is None:
                        continue
                    connection = (fd, int(fields[9]))
                    if last_data_received_ms(connection) >= idle_ms:
                        found.append(connection)
        except OSError:
            continue
    return found


def _socket(connection):
    """A socket on a duplicate of the connection's descriptor, or None if the descriptor now
    names something else (closed and reused since it was listed)."""
    fd, inode = connection
    try:
        duplicate = os.dup(fd)
    except OSError:
        return None
    if os.fstat(duplicate).st_ino != inode:
        os.close(duplicate)
        return None
    return socket.socket(fileno=duplicate)


def last_data_received_ms(connection):
    """Milliseconds since the connection last received data; 0 when that cannot be read."""
    sock = _socket(connection)
    if sock is None:
        return 0
    with sock:
        try:
            info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO.size)
        except OSError:
            return 0
    if len(info) < _TCP_INFO.size:
        return 0
    return _TCP_INFO.unpack(info)[_TCP_INFO_LAST_DATA_RECV]


def shut_reading_side(connection):
    """End the reads on a connection; the server can still write its answer on it."""
    sock = _socket(connection)
    if sock is None:
        return
    with sock:
        try:
            sock.shutdown(socket.SHUT_RD)
        except OSError:
            pass
