"""What a resource method declares its part of the spec with, beside its code.

Each Resource method is decorated with :func:`operation`; the parameters, bodies and answers
it names are built here from the catalogue, so that no data kind is ever missing.
"""

from .. import catalogue

# The name of a request example that needs a token; the docs send one with it.
PRIVATE_EXAMPLE = "with-token"


def operation(
    summary,
    *,
    responses,
    description=None,
    parameters=(),
    body=None,
    errors=None,
    scope=None,
    token_required=False,
):
    """Declare one resource method's part of the spec beside its code, so both change together.

    ``responses`` maps success statuses to response objects; ``errors`` maps error statuses
    to the messages that operation can answer with, each shown as an example. ``scope`` is
    the scope a token needs for what the operation keeps private (api/auth.py's SCOPES);
    ``token_required`` says it has no public part at all.
    """

    def attach(method):
        method.openapi = {
            "summary": summary,
            "description": description,
            "parameters": list(parameters),
            "body": body,
            "responses": responses,
            "errors": errors or {},
            "scope": scope,
            "token_required": token_required,
        }
        return method

    return attach


# Pieces the resources declare with.


def kind_names():
    """Every data kind, in catalogue order."""
    return list(catalogue.KINDS)


def _public_and_private(wrap=lambda value: value):
    """Two named examples: a public kind, and a private one that needs a token."""
    public = next(kind.name for kind in catalogue.KINDS.values() if not kind.private)
    examples = {"public": {"summary": "public data", "value": wrap(public)}}
    private = [kind.name for kind in catalogue.KINDS.values() if kind.private]
    if private:
        examples[PRIVATE_EXAMPLE] = {
            "summary": "private data, with a valid token",
            "value": wrap(private[0]),
        }
    return examples


def kind_parameter(name, location, required=True, description="Which data to answer with."):
    """A parameter naming one of the catalogue's kinds: ``data`` in the query, ``{kind}`` in
    the path."""
    return {
        "name": name,
        "in": location,
        "required": required,
        "description": description,
        "schema": {"type": "string", "enum": kind_names()},
        "examples": _public_and_private(),
    }


def data_body():
    """A POST body naming the data, as a form field or a JSON object. It is optional, as the
    query string may name the data instead; a body that names one must name a known kind."""
    schema = {
        "type": "object",
        "properties": {"data": {"type": "string", "enum": kind_names()}},
    }
    return {
        "description": "The data to answer with, as a form field or a JSON object; optional "
        "when the query string names it.",
        "required": False,
        "content": {
            media_type: {
                "schema": schema,
                "examples": _public_and_private(lambda name: {"data": name}),
            }
            for media_type in ("application/x-www-form-urlencoded", "application/json")
        },
    }


def json_response(description, schema, examples):
    """A JSON response with named examples."""
    return {
        "description": description,
        "content": {"application/json": {"schema": schema, "examples": examples}},
    }


def kinds_response():
    """A 200 answer with any kind from the catalogue, one example each."""
    return json_response(
        "The data asked for, in the envelope.",
        "AnyKind",
        {
            kind.name: {
                "summary": f"{kind.name}{' (with a valid token)' if kind.private else ''}",
                "value": {"type": kind.type, "content": kind.example_content()},
            }
            for kind in catalogue.KINDS.values()
        },
    )


def envelope_schema(type_, content, description=None):
    """The API's envelope with a fixed type and the given content schema."""
    schema = {
        "type": "object",
        "properties": {"type": {"const": type_}, "content": content},
        "required": ["type", "content"],
        "additionalProperties": False,
    }
    if description:
        schema["description"] = description
    return schema
