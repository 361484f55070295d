"""The REST API service: ``create_app()`` builds it for the web process, the CLI and the tests.

A request meets the parts in this order, from the socket to the access log line:

1. **granian** (``api/web/server.py``) parses HTTP; what is not HTTP, or a head over its limits,
   it answers itself, and the app never sees it.
2. **The edge** (``api/web/edge.py``): a request line over 4 KiB (414) or a header over 8 KiB
   (431) is answered in the envelope, uncounted; a body gets a ``wsgi.input`` that receives it
   whole when the view first reads it (``api/web/request_bodies.py``). A body that is slow with no
   slot free (503), late (408) or cut off (400) is raised there, in the view, and answered and
   counted like any of its errors.
3. **ProxyFix** (``api/security.py``): the client's address and scheme, from the proxies
   the ``PROXY_FIX_*`` settings trust.
4. **Flask** matches the route; its policy (``api/policy.py``) says what the route is.
5. **Before the view**, the hooks in this order:

   a. ``check_sent_token`` (``api/auth.py``): the token a request sends, checked once;
   b. Flask-Limiter (``api/rate_limits.py``): the budgets, the token's own among them; a 429
      ends the request here (counted at the end);
   c. ``count_hit`` (``api/counting.py``): the hit and the token's use, committed before the
      view, so that a hit count the view reports includes itself;
   d. ``check_body`` (``api/security.py``): a chunked body 411, a big one 413.

6. **The view**: a Flask-RESTful resource (``api/resources/``) or a page
   (``api/pages/``), reading a token where it needs one (``api/auth.py``). Any error,
   from any layer, becomes one shape in ``api/errors.py``.
7. **After the view**, the hooks in this order (Flask runs them last registered first, so
   each part's come in the reverse of its place above): CORS and the security headers
   (``api/security.py``), the RateLimit headers, ``count_outcome``, which sees the final
   status: the error of a counted request that failed, or the hit and the error of one refused
   before ``count_hit``, in one write; and last ``note_route`` (``api/metrics.py``), the route
   the request matched, for the metrics the edge records.
8. **The edge** again: the request's count and time in the metrics, the access log line
   (``api/web/access_log.py``) with its duration and request ID; and should an exception
   escape all of the above, a 500 in the envelope, counted, with one line in the app log.

**One pass.** What the parts decide about a request is worked out once and kept in its facts
(``policy.facts``): the route's policy, whether it is a hit, whether it is limited, whether it
carries a token, and the token's check (one hash, one lookup), which the limiter and the view
share. Later hooks read what the first one decided. ``GET /api?data=hits`` enters the modules
of ``api/`` 91 times and a wrong token's 401, which logs a line, 130 times, most of them
Flask, Flask-Limiter and logging calling this service's hooks, callbacks and filters:
``speedups/responses.py`` once per hook for Flask's coroutine check (14),
``speedups/limiter.py`` for each of Flask-Limiter's visits to its per-request state (14),
``policy.py`` once per fact asked for (13, each after the first a read), ``rate_limits.py``
for the limiter's callbacks (9), ``auth.py`` (9: the token check, and the budgets and the
count asking whose token it is), ``security.py`` (3: the Host, the body, the response headers),
``counting.py`` (3) and ``metrics.py`` (3: the route, the commit, the count).
``tests/test_request_path.py`` holds each fact to one working-out and the entries to these
numbers.
"""

import os

from flask_migrate import Migrate

from . import (
    auth,
    cli,
    counting,
    errors,
    logs,
    metrics,
    openapi,
    pages,
    policy,
    rate_limits,
    resources,
    security,
    speedups,
    storage,
    web,
)
from .config import Config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class App(speedups.responses.SyncOnceFlask):
    """Flask, with this service's speedups (``api/speedups/``), refusing a Host it could not
    show."""

    def create_url_adapter(self, request):
        """Flask's, for a Host that is valid IDNA; another is a 400 (api/security.py). Flask
        keeps the error for the view to raise, after the hit is counted."""
        if request is not None:
            security.check_host(request.environ)
        return super().create_url_adapter(request)

    def log_exception(self, exc_info):
        """Flask's, but for a database that failed outside the view: errors.py answers that
        503 and logs it as a warning, as it does one the view raised."""
        if not errors.database_unavailable(exc_info[1]):
            super().log_exception(exc_info)


def create_app(test_config=None):
    """Build the app: defaults, then the environment, then the test config on top. The parts
    are wired in the order of the request path (this module's docstring)."""
    app = App(
        __name__,
        instance_path=os.path.join(ROOT, "instance"),
        template_folder=os.path.join(ROOT, "templates"),
        static_folder=os.path.join(ROOT, "static"),
    )
    # Paths are matched as sent. Werkzeug would answer `/api//pizza` with an HTML redirect
    # that merges the slashes; a client that sent a wrong path gets a 404 in the shape of the
    # part it asked for instead.
    app.url_map.merge_slashes = False
    app.config.from_object(Config())
    if test_config:
        app.config.update(test_config)
    if not app.config["SQLALCHEMY_DATABASE_URI"]:
        # The embedded default: one SQLite file that every worker of this machine shares.
        os.makedirs(app.instance_path, exist_ok=True)
        path = os.path.join(app.instance_path, "api.sqlite3")
        app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite:///" + path
    # Every log line, in LOG_FORMAT, with its request's ID; whatever the app logs, a token that
    # found its way into a message is masked, and text a request carried into it is escaped.
    logs.init_app(app)

    # Errors first, so that every later part's failures come out in one shape.
    errors.init_app(app)
    # Metrics; their after-request hook runs last of all, noting the route matched.
    metrics.init_app(app)
    # The database, and the migrations that `flask db upgrade` applies.
    storage.init_app(app)
    Migrate(app, storage.db, directory=os.path.join(ROOT, "migrations"))
    # Every route: the API's resources, the pages beside them, and what each route is.
    resources.init_app(app)
    pages.init_app(app)
    policy.init_app(app)
    # The hooks, registered in the order of the request path above.
    counting.init_app(app)
    auth.init_app(app)
    rate_limits.init_app(app)
    counting.register_hit_hook(app)
    security.init_app(app)
    # The OpenAPI document, built from every route registered above.
    openapi.init_app(app)
    # `flask token ...`.
    cli.init_app(app)
    # Outermost, around ProxyFix and Flask: head limits, request bodies, the access log.
    web.init_app(app)
    return app
