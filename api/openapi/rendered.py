"""The document's two renderings, ``/api/openapi.json`` and ``/docs``: built once per app and
served with a validator, so that a client holding them revalidates and is answered 304.

Both depend only on the code and the app's settings, which are fixed for the app's life. Each
is built by the first request that asks for it, inside that request (the page needs
``url_for``), and kept in ``app.extensions`` rather than in the module, since one process may
hold apps with different settings (the tests do). The ``ETag`` is a hash of the bytes, so every
worker that runs the same code and settings sends the same one, and only it decides a
conditional GET (``If-None-Match``). ``Last-Modified`` is when this worker built them: it says
how old a copy is, but it is no validator, since a worker of a newer deploy may have built its
copy before a worker of the old one did, so ``If-Modified-Since`` is not honoured.
``If-Match``, ``If-Range`` and ``Range`` are ignored too and the whole answer sent, as before this
module: Werkzeug's ``make_conditional`` would answer a failed ``If-Match`` with 412 and the whole
document as its body, a status neither the spec nor the error envelope has, for a document no
client writes to. It would also add a ``Date``, which the server already sends.

A 304 goes through every after-request hook like any answer: the security headers, and
``count_outcome``, which sees a success. Werkzeug drops its body, ``Content-Type``,
``Content-Length`` and ``Last-Modified`` on the way to the server and keeps ``ETag`` and
``Cache-Control`` (``Response.get_wsgi_headers``, checked against Werkzeug 3.1.9).
"""

from dataclasses import dataclass
from datetime import UTC, datetime

from flask import current_app, request
from werkzeug.http import generate_etag, http_date, quote_etag
from werkzeug.sansio.http import is_resource_modified

# Where an app keeps its renderings: {name: {variant: Rendering}}.
EXTENSION = "api.rendered"
# Variants kept per rendering; a request for another is rendered for it alone. A page's links
# start with the request's script root, which a trusted proxy may set (PROXY_FIX_X_PREFIX):
# one or two per deployment, but not something to let grow without bound.
MAX_VARIANTS = 8


@dataclass(frozen=True)
class Rendering:
    """Bytes that stay the same for the app's life, and the validators that say so."""

    body: bytes
    mimetype: str
    etag: str
    last_modified: datetime
    # The validators and any other headers it always has, formatted once.
    headers: tuple

    @classmethod
    def of(cls, body, mimetype, headers=()):
        etag = generate_etag(body)
        built = datetime.now(UTC).replace(microsecond=0)
        validators = (("ETag", quote_etag(etag)), ("Last-Modified", http_date(built)))
        return cls(body, mimetype, etag, built, (*validators, *headers))

    def answer(self):
        """The bytes, or 304 with none when the request's validator shows the client has them."""
        response = current_app.response_class(
            self.body, mimetype=self.mimetype, headers=self.headers
        )
        environ = request.environ
        if "HTTP_IF_NONE_MATCH" in environ and not is_resource_modified(
            http_if_none_match=environ["HTTP_IF_NONE_MATCH"], etag=self.etag
        ):
            # Its Content-Type stays, so that the hooks treat it as the answer it stands for
            # (a page gets the page's headers); Werkzeug sends neither it nor the body.
            response.status_code = 304
        return response


def once(name, render, mimetype, variant="", headers=()):
    """This app's rendering ``name``: ``render()``'s bytes, built by the first request that
    asks, with ``headers`` beside its validators.

    Two first requests at once may both render; the bytes are the same, and the first kept
    is the one every later request is answered with.
    """
    variants = current_app.extensions.setdefault(EXTENSION, {}).setdefault(name, {})
    found = variants.get(variant)
    if found is None:
        found = Rendering.of(render(), mimetype, headers)
        if len(variants) < MAX_VARIANTS:
            found = variants.setdefault(variant, found)
    return found
