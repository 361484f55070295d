"""SQLAlchemy: statements run on the driver's own connection, for the counter writer.

The counter writers (``api/storage/sqlite_writer.py``, ``postgresql_writer.py``) run on every
counted request, and there SQLAlchemy's per-statement work cost more than the statements (156
µs a request on SQLite, 343 on PostgreSQL, against Core's ``connection.execute``). So they
compile their SQL once and run it on the DBAPI connection, and these two helpers reach into
SQLAlchemy 2.1.9 where its public API stops: ``SQLCompiler.positiontup`` and
``DBAPIError.instance``.
"""

import operator

import sqlalchemy as sa


def compiled(statement, dialect):
    """SQL compiled once for the driver, and how to pass it its parameters (the dict itself,
    or a tuple in positional order)."""
    compiled = statement.compile(dialect=dialect)
    order = compiled.positiontup
    if order is None:
        return compiled.string, lambda params: params
    if len(order) == 1:
        return compiled.string, lambda params: (params[order[0]],)
    return compiled.string, operator.itemgetter(*order)


def wrapped(error, params, dialect, disconnect):
    """A driver error wrapped as SQLAlchemy wraps it, so that errors.py answers it like any
    other database error (503 when ``disconnect``)."""
    return sa.exc.DBAPIError.instance(
        None,
        params,
        error,
        dialect.loaded_dbapi.Error,
        connection_invalidated=disconnect,
        dialect=dialect,
    )
