"""The one speed layer: every place this service replaces or reaches into a library's code.

Each override below was measured with ``python -m bench.overrides``, which builds the app with
and without it, checks that both answer byte for byte alike, and times ``/api?data=hits`` in
process (wall µs, medians of 7 interleaved rounds) and under callgrind (instructions per
request; about 6,000 make 1 µs on the bench machine). An override that bought less than
about 5 µs, or whose job a public API does, was removed; those kept are here, each checked
against the exact library version in :data:`CHECKED_AGAINST`. ``tests/test_speedups.py``
fails when an installed version differs, naming the overrides to review, and holds each
fast path's answer to the library's own.

======================================  =====================  ============  ==============
override                                library                gain, µs      instructions
======================================  =====================  ============  ==============
``responses.FinishedResponse``          Werkzeug               5             63k
``responses.SyncOnceFlask``             Flask                  10            43k
``limiter.RequestLimiter.context``      Flask-Limiter (Flask)  14            148k
``limiter.ParsedOnce``                  Flask-Limiter          50            372k
``limiter.FixedWindowMemory``           limits                 21            45k
``cors.SimpleCors``                     flask-cors             19            90k
``restful.JsonOnlyApi``                 Flask-RESTful          15            73k
``httpauth.only_when_sent``             Flask-HTTPAuth         11            53k
``pool.drop_closed_connections``        SQLAlchemy             334 (PG)      179k
``dbapi`` (the counter writer's path)   SQLAlchemy             156; 343 PG   551k; 665k
======================================  =====================  ============  ==============

Two underscore-private names remain, each worth more than any public path gives:
``flask.globals._cv_request`` (``limiter.RequestLimiter.context``) and
``flask_limiter._limits.RuntimeLimit`` (``limiter.ParsedOnce``). Measured and removed:
``headers._list`` (appending the security headers without Werkzeug's check for line breaks,
8 µs: the headers are now added with ``Headers.extend``), Flask-Limiter's private
``LimiterContext`` and ``_limiter_request_context`` (the context keeps its state on an
attribute of its own), and ``pool._pre_ping`` (the pool's options are read from the app's
config). What the app keeps of its own (``policy.facts``, ``/docs`` and the OpenAPI document
built once, the ``/stats`` stencils, the access log written with ``os.write``) replaces no
library code and lives with the part it serves.
"""

from . import cors, dbapi, httpauth, limiter, pool, responses, restful  # noqa: F401

#: The library versions every override here was written against and measured on.
CHECKED_AGAINST = {
    "werkzeug": "3.1.9",
    "flask": "3.1.3",
    "flask-limiter": "4.1.1",
    "limits": "5.8.0",
    "flask-cors": "6.0.5",
    "flask-restful": "0.3.10",
    "flask-httpauth": "4.8.1",
    "sqlalchemy": "2.1.9",
}


def to_review(installed):
    """``{library and its versions: [override, ...]}`` for each library whose installed version
    (``installed(name)``, as ``importlib.metadata.version`` answers) differs from the one its
    overrides were checked against."""
    review = {}
    for override, libraries in OVERRIDES.items():
        for library in libraries:
            found, checked = installed(library), CHECKED_AGAINST[library]
            if found != checked:
                review.setdefault(f"{library} {found} (checked against {checked})", []).append(
                    override
                )
    return review


#: Each override, and the libraries whose code it copies or reaches into.
OVERRIDES = {
    "responses.FinishedResponse": ("werkzeug",),
    "responses.SyncOnceFlask": ("flask",),
    "limiter.RequestLimiter.context": ("flask-limiter", "flask"),
    "limiter.ParsedOnce": ("flask-limiter",),
    "limiter.FixedWindowMemory": ("limits",),
    "cors.SimpleCors": ("flask-cors",),
    "restful.JsonOnlyApi": ("flask-restful",),
    "httpauth.only_when_sent": ("flask-httpauth",),
    "pool.drop_closed_connections": ("sqlalchemy",),
    "dbapi.compiled, dbapi.wrapped": ("sqlalchemy",),
}
