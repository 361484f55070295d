"""SQLAlchemy's pool: a connection the server has closed, found without a round trip."""

import select

import sqlalchemy as sa


def closed_by_server(dbapi_connection):
    """Whether the server sent something unasked on an idle connection: after a restart, a
    failover or an idle timeout that is the end of the stream, which reads as EOF."""
    readable, _, _ = select.select([dbapi_connection.fileno()], [], [], 0)
    return bool(readable)


def drop_closed_connections(dbapi_connection, _record, _proxy):
    """Replace a pooled connection the server has closed before a request uses it.

    The pool's checkout hook, in place of SQLAlchemy 2.1.9's ``pool_pre_ping``, whose round
    trip per checkout cost more than the query on the token check: raising
    DisconnectionError makes SQLAlchemy discard the connection and hand out a fresh one. A
    network that drops packets without closing anything goes unseen here, as it would by a
    ping, until the query on it fails; that connection is then invalidated.
    """
    if closed_by_server(dbapi_connection):
        raise sa.exc.DisconnectionError("the database server closed this connection")
