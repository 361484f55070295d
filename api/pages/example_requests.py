"""Example requests, built from an operation's examples in the OpenAPI document.

``/docs`` shows them as curl lines ready to paste, and the tests send the same requests to the
app, so a line on the page cannot stop working unnoticed.
"""

import json
import shlex
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from .. import openapi
from ..openapi import reads_token, resolve

# The documented way to hold a token in a shell; the quick start sets it.
SHELL_VARIABLE = "$TOKEN"
# Where requests go when the server has no PUBLIC_URL: the reader's shell knows, it does not.
SHELL_BASE = "$BASE"


@dataclass
class ExampleRequest:
    """One request built from an operation's examples."""

    method: str
    path: str
    with_token: bool = False
    media_type: str | None = None
    body: object = None
    # Show the status line too, for operations that never answer 2xx.
    include_status: bool = False

    def encoded_body(self):
        """The body as it goes on the wire."""
        if self.media_type == "application/json":
            return json.dumps(self.body)
        if self.media_type == "application/x-www-form-urlencoded":
            return urlencode(self.body)
        return None

    def curl(self, base_url):
        """A curl command line for this request, quoted for a POSIX shell.

        The URL is in double quotes, so that a base of ``$BASE`` expands; the path is
        percent-encoded and PUBLIC_URL checked at start-up, so nothing else in it means
        anything to a shell.
        """
        parts = ["curl"]
        if self.include_status:
            parts.append("-i")
        if self.method != "GET":
            parts += ["-X", self.method]
        if self.with_token:
            # Double quotes, so that the shell expands the variable.
            parts += ["-H", f'"Authorization: Bearer {SHELL_VARIABLE}"']
        if self.media_type == "application/json":
            parts += ["-H", shlex.quote("Content-Type: application/json")]
        if self.media_type:
            parts += ["-d", shlex.quote(self.encoded_body())]
        parts.append(f'"{base_url.rstrip("/")}{self.path}"')
        return " ".join(parts)


def _example_value(examples, name):
    chosen = examples.get(name) or next(iter(examples.values()))
    return chosen["value"]


def example_requests(spec, path, method, operation):
    """Requests built from the operation's named examples; the private one carries a token."""
    parameters = [resolve(spec, p) for p in operation.get("parameters", [])]
    content = resolve(spec, operation.get("requestBody", {})).get("content", {})
    names = []
    for source in [p.get("examples", {}) for p in parameters] + [
        media.get("examples", {}) for media in content.values()
    ]:
        names += [name for name in source if name not in names]
    private_name = openapi.PRIVATE_EXAMPLE
    never_succeeds = not any(status.startswith("2") for status in operation["responses"])
    may_need_token = "401" in operation["responses"] and reads_token(spec, operation)
    # An operation whose every security requirement names a scheme has no public part.
    token_only = {} not in operation.get("security", spec.get("security", [{}]))
    if not names:
        names = [private_name] if token_only else [None, private_name] if may_need_token else [None]
    media_types = list(content) or [None]

    def build_request(name, media_type):
        url = path
        query = {}
        for parameter in parameters:
            if not parameter.get("required"):
                continue
            examples = parameter.get("examples") or {"": {"value": parameter.get("example")}}
            value = _example_value(examples, name)
            if parameter["in"] == "path":
                url = url.replace("{" + parameter["name"] + "}", quote(str(value), safe=""))
            elif parameter["in"] == "query":
                query[parameter["name"]] = value
        if query:
            url += "?" + urlencode(query)
        body = None
        if media_type:
            body = _example_value(content[media_type].get("examples", {}), name)
        return ExampleRequest(
            method=method.upper(),
            path=url,
            with_token=name is not None and name == private_name,
            media_type=media_type,
            body=body,
            include_status=never_succeeds,
        )

    # Every example with the first media type, then the first example with each other one.
    requests = [build_request(name, media_types[0]) for name in names]
    requests += [build_request(names[0], media_type) for media_type in media_types[1:]]
    return requests
