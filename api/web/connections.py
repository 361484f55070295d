"""This process's TCP connections, as the kernel sees them, and ending reads on one of them.

The server's connections are not the app's to see: a WSGI request carries no socket, and
granian hands over no client port. So the body deadline's watchdog (``request_bodies.py``)
finds the connections of this process on the listening port in ``/proc`` and reads each one's
timers with ``TCP_INFO``, and shuts down the reading side of those whose request must end, so
that a read blocked on them returns short while the answer can still be written.
"""

import os
import socket
import struct

# TCP_ESTABLISHED in /proc/net/tcp, and where tcpi_last_data_sent and tcpi_last_data_recv sit
# in struct tcp_info: after eight one-byte fields, the tenth and twelfth 32-bit fields
# (linux/tcp.h).
_ESTABLISHED = "01"
_TCP_INFO = struct.Struct("8B12I")
_TCP_INFO_LAST_DATA_SENT = 8 + 9
_TCP_INFO_LAST_DATA_RECV = 8 + 11


def overdue_connections(port, limit_ms, head_ms):
    """This process's established TCP connections on ``port`` (the server's side) in the
    middle of a request that must end, as (file descriptor, inode) pairs: those that have
    received nothing for ``limit_ms``, and those still receiving more than ``limit_ms`` plus
    ``head_ms`` after they last sent anything. Idle connections between requests (nothing
    received since the last answer) are neither."""
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
                    sent, received = last_data_ms(connection)
                    # Received before it last sent: idle between requests. (A request that came
                    # in the same clock tick as the connection or its last answer reads equal.)
                    if received > sent:
                        continue
                    if received >= limit_ms or sent - received > limit_ms + head_ms:
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


def last_data_ms(connection):
    """Milliseconds since the connection last sent data and since it last received data (a new
    connection counts as having sent when it opened); (0, 0) when that cannot be read."""
    sock = _socket(connection)
    if sock is None:
        return 0, 0
    with sock:
        try:
            info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO.size)
        except OSError:
            return 0, 0
    if len(info) < _TCP_INFO.size:
        return 0, 0
    fields = _TCP_INFO.unpack(info)
    return fields[_TCP_INFO_LAST_DATA_SENT], fields[_TCP_INFO_LAST_DATA_RECV]


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
