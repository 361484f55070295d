"""Every answer the suite sees, checked against the spec by openapi-core (not our own code).

The test client of every app the fixtures build, and ``servers.fetch`` against real servers,
hand each response here. An answer to a documented operation must match its status, headers
and body; ``application/problem+json`` bodies are read as JSON. The spec documents no 405
operation and no unknown path (it says so in its description): a 405 must carry ``Allow`` and
the error envelope or problem details, a 404 for an unlisted path under the API the same.
Pages for people (HTML), static files and the health check's plain answers outside the spec
are not the spec's to judge.
"""

import json
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import parse_qsl, urlsplit

import jsonschema_rs
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.templating.paths.exceptions import OperationNotFound, PathNotFound
from werkzeug.datastructures import Headers, ImmutableMultiDict

from api import create_app

JSON_TYPES = ("application/json", "application/problem+json")


@dataclass
class SentRequest:
    """openapi-core's request protocol, from a method and a URL."""

    method_: str
    url: str
    headers_: dict = field(default_factory=dict)

    def __post_init__(self):
        parts = urlsplit(self.url)
        self.host_url = f"{parts.scheme or 'http'}://{parts.netloc or 'localhost'}"
        self.path = parts.path
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(parse_qsl(parts.query, keep_blank_values=True)),
            header=Headers(self.headers_),
        )

    method = property(lambda self: self.method_.lower())
    body = b""
    content_type = "application/octet-stream"


@dataclass
class ReceivedResponse:
    """openapi-core's response protocol, from a status, headers and body."""

    status_code: int
    headers: Headers
    data: bytes

    @property
    def content_type(self):
        return self.headers.get("Content-Type", "").lower()


class SpecCheck:
    """Checks answers against one spec."""

    def __init__(self, spec):
        self.spec = spec
        # The operations are what is checked, not the address: a document whose server is
        # PUBLIC_URL still judges the test client's requests to localhost.
        self.openapi = OpenAPI.from_dict(
            {**spec, "servers": [{"url": "/"}]},
            config=Config(extra_media_type_deserializers={"application/problem+json": json.loads}),
        )
        # Answers already found to conform, keyed on all that their check reads: most tests
        # repeat a handful of answers many times, and openapi-core takes about 1 ms a check.
        self.conforming = set()
        schemas = spec["components"]["schemas"]
        self.error = jsonschema_rs.validator_for({**schemas["Error"], "$defs": schemas})
        self.problem = jsonschema_rs.validator_for(schemas["Problem"])

    def check(self, method, url, status, headers, body):
        """Fail with what is wrong when an answer breaks the spec."""
        headers = Headers(headers)
        mimetype = headers.get("Content-Type", "").split(";")[0].strip().lower()
        if mimetype not in JSON_TYPES or method.upper() in ("HEAD", "OPTIONS"):
            return
        key = (method, urlsplit(url).path, status, tuple(headers.items()), body)
        if key in self.conforming:
            return
        request = SentRequest(method, url)
        response = ReceivedResponse(status, headers, body)
        errors = list(self.openapi.iter_response_errors(request, response))
        missing = [e for e in errors if isinstance(e, OperationNotFound | PathNotFound)]
        if missing:
            self.check_undocumented(missing[0], status, headers, mimetype, body, url)
        else:
            assert errors == [], f"{method} {url} answered {status} against the spec: {errors}"
        self.conforming.add(key)

    def check_undocumented(self, missing, status, headers, mimetype, body, url):
        """A method a path does not take, or a path the spec does not list: an error in the
        envelope (or as problem details), and Allow on a 405. A success would be a route the
        spec forgot."""
        assert status >= 400, f"{url} answered {status} with {mimetype}, undocumented"
        if status == 405:
            assert headers.get("Allow"), f"{url}: a 405 without Allow"
        validator = self.problem if mimetype == "application/problem+json" else self.error
        validator.validate(json.loads(body))


@lru_cache(maxsize=1)
def default():
    """The checker for a server with the default settings, as the suite's real servers run."""
    return SpecCheck(create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://"}).extensions["openapi"])
