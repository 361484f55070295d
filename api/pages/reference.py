"""What the ``/docs`` page shows, read from the OpenAPI document and nowhere else.

One entry per operation, with its parameters, auth, responses and example bodies, and the
example requests from the spec as curl lines ready to paste. Tests send the same example
requests to the app, so a curl line on the page cannot stop working unnoticed.
"""

import json
from dataclasses import dataclass, field

from ..errors import STATUSES
from ..openapi import ERROR_HEADERS, reads_token, resolve
from .example_requests import ExampleRequest, example_requests

HTTP_METHODS = ("get", "post", "put", "patch", "delete")


@dataclass
class Parameter:
    name: str
    where: str
    required: bool
    values: list
    description: str


@dataclass
class Example:
    summary: str
    body: str


@dataclass
class Response:
    status: str
    description: str
    schema: str | None
    headers: list = field(default_factory=list)
    examples: list = field(default_factory=list)
    # For an error: the message each example carries, as people read them.
    messages: list = field(default_factory=list)


@dataclass
class Endpoint:
    """One operation, as the docs page lays it out."""

    anchor: str
    method: str
    path: str
    summary: str
    description: str
    auth: str
    allow: str
    parameters: list
    bodies: list
    responses: list
    shared_statuses: list
    requests: list


def schema_name(schema):
    """The component name a schema refers to, or its type."""
    if not schema:
        return None
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    return schema.get("type")


def pretty(value):
    """JSON as people read it, in few lines: a flat object on one line; an object holding an
    object (the envelope around a report) with that object's members one to a line."""

    def compact(inner):
        return json.dumps(inner, ensure_ascii=False)

    if not (isinstance(value, dict) and any(isinstance(v, dict) and v for v in value.values())):
        return compact(value)
    parts = []
    for key, inner in value.items():
        if isinstance(inner, dict) and inner:
            members = ",\n".join(f"  {compact(k)}: {compact(v)}" for k, v in inner.items())
            parts.append(f"{compact(key)}: {{\n{members}\n}}")
        else:
            parts.append(f"{compact(key)}: {compact(inner)}")
    return "{" + ", ".join(parts) + "}"


def operations(spec):
    """(path, method, operation) for every operation, in the spec's order."""
    for path, item in spec["paths"].items():
        for method in HTTP_METHODS:
            if method in item:
                yield path, method, item[method]


def _auth(spec, operation):
    if not reads_token(spec, operation):
        return "None. A token is not read here."
    scopes = sorted({s for req in operation.get("security", []) for v in req.values() for s in v})
    needs = f" with the scope {', '.join(scopes)}" if scopes else ""
    if "401" in operation["responses"]:
        return (
            f"Optional for public data; private data needs a valid token{needs}, in the "
            "Authorization header or the token query parameter."
        )
    return "Not needed. A token that is sent must still be sent correctly, or the answer is 400."


def _response(status, response):
    media = response.get("content", {}).get("application/json", {})
    return Response(
        status=status,
        description=response["description"],
        schema=schema_name(media.get("schema")),
        headers=[
            (name, header.get("example", ""))
            for name, header in response.get("headers", {}).items()
        ],
        examples=[
            Example(example.get("summary", name), pretty(example["value"]))
            for name, example in media.get("examples", {}).items()
        ],
        messages=[
            example["value"]["content"]
            for example in media.get("examples", {}).values()
            if isinstance(example["value"], dict) and example["value"].get("type") == "Error"
        ],
    )


def _responses(operation):
    """What is particular to one operation: its own answers, not the shared ones."""
    return [
        _response(status, response)
        for status, response in operation["responses"].items()
        if "$ref" not in response
    ]


def _shared_statuses(operation):
    """The statuses an operation answers as every operation does, described once."""
    return [status for status, response in operation["responses"].items() if "$ref" in response]


def _parameters(spec, operation):
    found = []
    for parameter in operation.get("parameters", []):
        parameter = resolve(spec, parameter)
        found.append(
            Parameter(
                name=parameter["name"],
                where=parameter["in"],
                required=parameter.get("required", False),
                values=parameter.get("schema", {}).get("enum", []),
                description=parameter.get("description", ""),
            )
        )
    return found


def _bodies(spec, operation):
    content = resolve(spec, operation.get("requestBody", {})).get("content", {})
    bodies = []
    for media_type, media in content.items():
        first = next(iter(media.get("examples", {}).values()), {}).get("value")
        request = ExampleRequest("POST", "", media_type=media_type, body=first)
        bodies.append((media_type, request.encoded_body() if first is not None else ""))
    return bodies


def anchor(method, path):
    """A stable, readable fragment for one operation: ``get-api-kind``."""
    words = [method] + [w for w in path.replace("{", "").replace("}", "").split("/") if w]
    return "-".join(word.replace(".", "-") for word in words)


def endpoints(spec):
    """Every operation of the spec, ready for the template."""
    return [
        Endpoint(
            anchor=anchor(method, path),
            method=method.upper(),
            path=path,
            summary=operation.get("summary", ""),
            description=operation.get("description", ""),
            auth=_auth(spec, operation),
            allow=", ".join(sorted({*map(str.upper, spec["paths"][path]), "HEAD", "OPTIONS"})),
            parameters=_parameters(spec, operation),
            bodies=_bodies(spec, operation),
            responses=_responses(operation),
            shared_statuses=_shared_statuses(operation),
            requests=example_requests(spec, path, method, operation),
        )
        for path, method, operation in operations(spec)
    ]


def error_statuses(spec):
    """Every error status the service answers, once: the shared description from the spec
    where operations refer to one, else what the status means (its messages are each
    operation's own), with the headers it comes with."""
    shared = spec["components"]["responses"]
    found = []
    for status, known in sorted(STATUSES.items()):
        name = f"Error{status}"
        if name in shared:
            found.append(_response(str(status), shared[name]))
            continue
        headers = [(h, v.get("example", "")) for h, v in ERROR_HEADERS.get(status, {}).items()]
        found.append(Response(str(status), known.description, "Error", headers=headers))
    return found
