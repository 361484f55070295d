"""Flask and Werkzeug: the response handed to the server, and the coroutine check per hook."""

from flask import Flask, Response


class FinishedResponse(Response):
    """Flask's response, handed to the server without Werkzeug's copy of its headers when
    nothing in them needs fixing for the environment.

    Copies Werkzeug 3.1.9's ``Response.get_wsgi_headers`` decision: it copies every answer's
    headers before it looks at them, in case it must make a Location absolute, fill in a
    Content-Length or drop one. Every answer of this service already carries its length and
    none is informational, so the copy buys nothing; any answer that does need a fix takes
    Werkzeug's own path.
    """

    def get_wsgi_headers(self, environ):
        status = self.status_code
        if status >= 200 and status not in (204, 304):
            length = False
            for name, _ in self.headers:
                lowered = name.lower()
                if lowered == "content-length":
                    length = True
                elif lowered in ("location", "content-location"):
                    length = False
                    break
            if length:
                return self.headers
        return super().get_wsgi_headers(environ)


class SyncOnceFlask(Flask):
    """Flask, asking once per function rather than once per request whether it is a coroutine.

    Flask 3.1.3 calls ``ensure_sync`` on every before- and after-request hook of every request,
    and ``inspect.iscoroutinefunction`` behind it costs about 1 µs a call; the answer for a
    given function never changes. An async view or hook added later is still run the way
    Flask runs it.
    """

    response_class = FinishedResponse

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._synchronous = {}

    def ensure_sync(self, func):
        # Keyed by the function, never by a bound method: Flask-RESTful hands over the
        # dispatch_request of a Resource made anew for each request, and a cache keyed by
        # those would keep every request's Resource alive. Functions are a fixed set.
        key = getattr(func, "__func__", func)
        try:
            synchronous = self._synchronous[key]
        except KeyError:
            synchronous = self._synchronous[key] = super().ensure_sync(func) is func
        except TypeError:
            # Unhashable callables are rare; they take Flask's own path every time.
            return super().ensure_sync(func)
        return func if synchronous else super().ensure_sync(func)
