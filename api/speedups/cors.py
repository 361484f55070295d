"""flask-cors: the headers every simple request meets, taken from flask-cors once."""

from flask_cors.core import get_cors_headers, get_cors_options, set_cors_headers
from werkzeug.datastructures import Headers


class SimpleCors:
    """flask-cors's answer for the routes other origins may read, with the common one built
    once.

    flask-cors 6.0.5 evaluates its options on every response, about 20 µs. With the default
    ``*`` every answer outside a preflight gets the same headers, so those are taken from
    flask-cors once, here, and added as they are; preflights and named origins go through
    flask-cors itself (``flask_cors.core``, undocumented). Where origins are named, every
    answer varies on Origin, allowed or not, so that a cache never hands one origin's answer
    to another.
    """

    def __init__(self, app, origins, **options):
        self.options = get_cors_options(app, {"origins": origins, **options})
        self.wildcard = origins == ["*"]
        # What flask-cors sends to a request from any origin, or from none, outside a preflight.
        self.simple = tuple(
            get_cors_headers(
                self.options, Headers({"Origin": "https://any.example"}), "GET"
            ).items()
        )

    def add_headers(self, response, method):
        """flask-cors's headers for this answer to a request with this method."""
        if self.wildcard and method != "OPTIONS":
            response.headers.extend(self.simple)
            return
        set_cors_headers(response, self.options)
        if not self.wildcard:
            response.vary.add("Origin")
