"""Hardening every response shares: the proxy we trust, the Host, body size, security headers
and CORS.

Header values are built once here, so each response pays for one extend and two checks.

**The Host header** is the client's to write (or, with ``PROXY_FIX_X_HOST``, the proxy's
``X-Forwarded-Host``). Flask binds the URL map to it before any hook runs. Werkzeug encodes
it as IDNA there, and decodes it wherever a URL shows it, so a name that only one way accepts
(``xn--zz``) would fail later, as a 500. :func:`check_host` refuses, with ``BadHost`` before
binding, any Host that is not valid IDNA both ways (``a..b``, a label over 63 characters,
``xn--zz``), a Host sent twice, and an HTTP/1.1 request without one; Flask refuses one
outside ``TRUSTED_HOSTS`` with ``SecurityError``. Both are a ``400`` that the view raises
after the hit is counted, answered with one fixed message, so the Host is never echoed, and
as data (``policy.current``), since no page can be built on an unbound map. No page shows
the Host either: examples use ``PUBLIC_URL`` (``api/pages/``).
"""

import functools

from flask import abort, request
from werkzeug.exceptions import BadHost, SecurityError
from werkzeug.middleware.proxy_fix import ProxyFix

from . import auth, errors, policy
from .speedups.cors import SimpleCors

# What a request with a Host this service does not answer for is told; never the Host itself.
HOST_REFUSED = "Bad Host header"

# On every response, whatever its type.
ALWAYS = (
    ("X-Content-Type-Options", "nosniff"),
    # Query-string tokens must not travel to other sites in a Referer.
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
)

# HTML pages load only their own stylesheet; no inline script or style, no frames, no plugins.
# data: images cover the empty favicon in base.html, which saves a request for /favicon.ico.
PAGE_CSP = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
# Everything else is data, and must not run or load anything if a browser renders it.
DATA_CSP = "default-src 'none'; frame-ancestors 'none'"

# What other origins' pages may read of an answer: the rate limits (api/rate_limits/), as
# the draft IETF RateLimit fields (draft-ietf-httpapi-ratelimit-headers; the reset is in
# seconds from now, as most clients read it), Retry-After on a 429, and the validators of the
# OpenAPI document (api/openapi/rendered.py), so that a page can ask for it conditionally.
EXPOSED_HEADERS = (
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "RateLimit-Policy",
    "Retry-After",
    "ETag",
    "Last-Modified",
)
# What other origins' pages may send: a token, a body's type, the answer's type, and the
# conditional headers of a revalidation.
ALLOWED_HEADERS = (
    "Authorization",
    "Content-Type",
    "Accept",
    "If-None-Match",
)

# One year; browsers then refuse plain http for this host.
HSTS = "max-age=31536000; includeSubDomains"

# Pages show live counts (api/pages/): a cache may keep one, but must ask again before it
# serves it, so no one is handed a stale or someone else's page.
PAGE_CACHING = "no-cache"

# The complete lists, built once, so that a response pays for one extend().
PAGE_HEADERS = (
    *ALWAYS,
    ("Content-Security-Policy", PAGE_CSP),
    ("Cache-Control", PAGE_CACHING),
)
DATA_HEADERS = (*ALWAYS, ("Content-Security-Policy", DATA_CSP))


def add_security_headers(response, route):
    """Headers for every response, the page CSP and no-cache for pages, no-store when a token
    came."""
    headers = response.headers
    # Nothing that answers with data is a page, not even the empty text/html answer to a CORS
    # preflight.
    page = response.mimetype == "text/html" and not route.data
    headers.extend(PAGE_HEADERS if page else DATA_HEADERS)
    if request.is_secure:
        headers["Strict-Transport-Security"] = HSTS
    if auth.credentials_presented():
        # Neither the browser nor any cache in between may keep what a token unlocked; this
        # replaces a page's no-cache.
        headers["Cache-Control"] = "no-store"


CHUNKED_REFUSED = (
    "Chunked request bodies are not accepted; send the body with a Content-Length header"
)


def check_body():
    """Refuse a chunked body, and a body over the size limit, on every route.

    A chunked body is refused outright (RFC 9112 allows a server to ask for a length): granian
    hands the app a chunked body that the client cut off as if it were complete, so a
    truncated one could not be told from a whole one. With a Content-Length it can, and the
    edge's reader does (api/web/request_bodies.py). The bodies this API takes are a few bytes.
    """
    environ = request.environ
    # Most requests carry no body at all; they need none of the checks below.
    if "HTTP_TRANSFER_ENCODING" in environ:
        abort(411, description=CHUNKED_REFUSED)
    if "CONTENT_LENGTH" not in environ:
        return
    limit = request.max_content_length
    if limit is not None and (request.content_length or 0) > limit:
        abort(413, description=body_too_large(limit))


@functools.lru_cache(maxsize=256)
def valid_idna(host):
    """Whether a Host (its port aside, as Werkzeug splits it) encodes and decodes as IDNA.
    Cached: a service sees a handful of Hosts, and the codec costs about 3 us a call."""
    try:
        host.partition(":")[0].encode("idna").decode("idna")
    except UnicodeError:
        return False
    return True


def check_host(environ):
    """Refuse a Host that is not valid IDNA, sent twice (a server joins the two with a comma),
    or missing from an HTTP/1.1 request (RFC 9112, section 3.2, asks for a 400 for each),
    before Flask binds the URL map to it."""
    host = environ.get("HTTP_HOST")
    if host:
        if "," in host or not valid_idna(host):
            raise BadHost()
    elif environ.get("SERVER_PROTOCOL") == "HTTP/1.1":
        raise BadHost()


def refuse_host(_error):
    """A 400 for a Host that cannot be bound or is not trusted, with a message of our own:
    Werkzeug's for an untrusted Host quotes it."""
    return errors.error_response(400, HOST_REFUSED)


def body_too_large(limit):
    """The 413 message, naming the limit so that a client knows how much to cut."""
    return f"Request body too large; the limit is {limit} bytes"


def init_app(app):
    """Trust the configured proxies, refuse bad Hosts, cap bodies, add the headers and allow
    CORS on the API."""
    config = app.config
    hops = {
        name: config[f"PROXY_FIX_X_{name.upper()}"]
        for name in ("for", "proto", "host", "port", "prefix")
    }
    if any(hops.values()):
        app.wsgi_app = ProxyFix(app.wsgi_app, **{f"x_{name}": n for name, n in hops.items()})

    app.register_error_handler(BadHost, refuse_host)
    app.register_error_handler(SecurityError, refuse_host)

    app.before_request(check_body)
    app.after_request(response_hook(app, config["CORS_ORIGINS"]))


def response_hook(app, origins):
    """The one after-request hook of this module: CORS on what other origins may read, then
    the security headers on everything."""
    cors = SimpleCors(
        app,
        origins,
        # The default "*" is sent as "*", not echoed per origin, so caches need not vary.
        send_wildcard=True,
        supports_credentials=False,
        methods=["GET", "HEAD", "POST", "OPTIONS"],
        allow_headers=list(ALLOWED_HEADERS),
        expose_headers=list(EXPOSED_HEADERS),
        max_age=600,
    )

    def secure_response(response):
        """Let other origins' pages read /api, telling caches when the answer depends on it;
        then the security headers."""
        route = policy.current()
        if route.cross_origin:
            cors.add_headers(response, request.method)
        add_security_headers(response, route)
        return response

    return secure_response
