"""What each route is, declared once, and what each request is, worked out once.

Each route declares its :class:`Policy` once, where it is defined: a Resource in its ``policy``
class attribute (``api/resources/``), a page view through ``auth.optional_token`` or else as a
plain page. :func:`init_app` reads every route's policy into one table per app. A request that
matches no route (a 404 or a 405) is counted and limited like any other, and answers in the
shape of the routes that share its first path segment, so that a mistyped API path gets JSON
and a mistyped page a page.

Each request's :class:`Facts` (:func:`facts`) hold what the parts decide about it: its route's
policy, whether it is a hit (``counting.py``), whether it draws on the rate limits
(``rate_limits/``), whether it carries a token and which token that is (``auth.py``). Each part
decides its own fact the first time it is asked and keeps it there, in the request's WSGI
environ, so that no hook works anything out twice; the environ outlives the request context,
for the edge's last resort.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from flask import Request, current_app, request
from flask.globals import request_ctx


@dataclass(frozen=True)
class Policy:
    #: A hit, and an error when it fails (HEAD and OPTIONS never are).
    counted: bool = True
    #: Draws on the rate limits (OPTIONS never does).
    limited: bool = True
    #: The view checks a token, so the limiter looks it up first and the spec lists its 400s.
    reads_token: bool = False
    #: Answers with data: errors in the envelope, the data CSP. Otherwise a page for people.
    data: bool = True
    #: Other origins' pages may read it (CORS).
    cross_origin: bool = False
    #: The counters its view will report, given the request (``request -> names``): read in
    #: the transaction that counts its hit, so that reporting them costs no second round trip.
    reads: Callable[[Request], Iterable[str]] | None = None


API = Policy(cross_origin=True)
API_WITH_TOKEN = Policy(reads_token=True, cross_origin=True)
PAGE = Policy(data=False)
PAGE_WITH_TOKEN = Policy(data=False, reads_token=True)
# Health checks: a platform polls them, and they must answer even when a client is throttled.
OPERATIONS = Policy(counted=False, limited=False)
STATIC = Policy(counted=False, limited=False, data=False)
UNROUTED_PAGE = PAGE

# Where a request's facts are kept.
FACTS = "api.facts"
# A request whose Host could not be bound (see current()).
UNBOUND_HOST = Policy()


def policy_of(app, endpoint, view):
    """The policy a route declared: on its Resource class, on its view, or a plain page."""
    if endpoint == "static" and app.has_static_folder:
        return STATIC
    holder = getattr(view, "view_class", view)
    return getattr(holder, "policy", PAGE)


def section(path):
    """A path's first segment, ``/api`` for ``/api/pizza``."""
    return "/" + path.split("/", 2)[1] if path.startswith("/") else "/"


class Policies:
    """Every route's policy for one app, by endpoint, and the shape of unrouted paths."""

    def __init__(self, app):
        views = app.view_functions.items()
        self.by_endpoint = {endpoint: policy_of(app, endpoint, view) for endpoint, view in views}
        # For a path no route matches: the shape of the routes under its first segment.
        self.by_section = {}
        for rule in app.url_map.iter_rules():
            found = self.by_endpoint[rule.endpoint]
            if found is not STATIC:
                self.by_section.setdefault(section(rule.rule), found)

    def for_request(self, endpoint, path):
        if endpoint is not None:
            try:
                return self.by_endpoint[endpoint]
            except KeyError:
                # A route added after the app was built (a test's, say) is read when first met.
                view = current_app.view_functions[endpoint]
                found = self.by_endpoint[endpoint] = policy_of(current_app, endpoint, view)
                return found
        like = self.by_section.get(section(path), UNROUTED_PAGE)
        return Policy(data=like.data, cross_origin=like.cross_origin)

    def paths(self, app, **wanted):
        """The URL rules of the routes whose policy has every attribute given, static aside."""
        return sorted(
            {
                rule.rule
                for rule in app.url_map.iter_rules()
                if self.by_endpoint[rule.endpoint] is not STATIC
                and all(getattr(self.by_endpoint[rule.endpoint], k) == v for k, v in wanted.items())
            }
        )


@dataclass(slots=True)
class Facts:
    """What the parts have decided about one request; None until the part first asks."""

    #: The route's :class:`Policy`.
    policy: Policy
    #: A hit (counting.counts_as_hit).
    counted: bool | None = None
    #: Draws on the rate limits (rate_limits.unlimited).
    limited: bool | None = None
    #: Carries a token, valid or not (auth.credentials_presented).
    credentials: bool | None = None
    #: The token checked: ``(the token sent, the storage.Token it is, or None when it does not
    #: work)`` (auth.verify_token).
    checked: tuple | None = None
    #: Why the token sent does not work (auth.refusal), for the 401's message.
    refused_because: str | None = None


def facts():
    """This request's facts, made when first asked for, with its route's policy."""
    environ = request.environ
    found = environ.get(FACTS)
    if found is None:
        found = environ[FACTS] = Facts(_route_policy())
    return found


def current():
    """The policy of the route this request matched, or of its section when it matched none."""
    return facts().policy


def _route_policy():
    """The policy of the route this request matched, or of its section when it matched none.

    A request whose Host the URL map could not be bound to (api/security.py) matched nothing
    and cannot have a page built for it, since building any URL needs the bound map: it
    answers as data.
    """
    endpoint = request.endpoint
    if endpoint is None and request_ctx.url_adapter is None:
        return UNBOUND_HOST
    return current_app.extensions["policies"].for_request(endpoint, request.path)


def init_app(app):
    """Read every route's policy; call once all routes exist."""
    app.extensions["policies"] = Policies(app)
